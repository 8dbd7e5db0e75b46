"""A causal language model behind the towers: projected tokens where the placeholders are, as many as the
encoder gives; left-padded batched generation equal to one row at a time; projectors; Flamingo's gated
cross-attention starting closed; LoRA merged into the weights giving the same answers; one clear line for
a folder of another kind of model or a LoRA target the model lacks."""

from __future__ import annotations

import json

import pytest
import torch

from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput
from mmcli.models.representation import Representation
from mmcli.objectives.base import BuildContext
from mmcli.objectives.decoders.projectors import ProjectorSettings, build_projector
from mmcli.objectives.text import TextConfig
from mmcli.registries import OBJECTIVES

D = 16
LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128}
TURNS = [[{"role": "user", "content": "<image>\nwhat color is it?"}, {"role": "assistant", "content": "red"}],
         [{"role": "user", "content": "what shape is it? <image>"}, {"role": "assistant", "content": "a round circle"}],
         [{"role": "user", "content": "<image> say something long please"}, {"role": "assistant", "content": "ok"}]]


def task(decoder: dict | None = None, **settings: object) -> torch.nn.Module:
    decoder = {"type": "hf_causal_lm", "config": LLAMA, **(decoder or {})}
    config = TextConfig(column="c", inputs=["image"], max_length=32, decoder=decoder, **settings)
    spec = json.loads(json.dumps(config.target_codec().fit([json.dumps(t) for t in TURNS]).spec()))
    torch.manual_seed(0)
    built = OBJECTIVES.build(config, context=BuildContext(name="c", hidden_size=D, inputs={"image": "image"},
                                                          target_spec=spec))
    return built.eval()


def rep(tokens: int = 5, rows: int = 3, missing: tuple[int, ...] = ()) -> Representation:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(rows, tokens, dtype=torch.bool)
    mask[list(missing)] = False
    encoded = {"image": EncoderOutput(torch.randn(rows, tokens, D, generator=generator), mask,
                                      torch.randn(rows, D, generator=generator))}
    return Representation(encoded=encoded, inputs=encoded)


def targets(chat: torch.nn.Module, turns: list[list[dict]] = TURNS) -> torch.Tensor:
    return torch.as_tensor(chat.codec.encode([json.dumps(t) for t in turns]))


@torch.no_grad()
def test_projected_tokens_take_the_placeholder_place_row_by_row() -> None:
    chat = task()
    decoder, batch = chat.decoder, targets(chat)
    media = decoder._media(rep())
    embeds, attention, labels, lengths = decoder._sequence(batch[:, 0], batch[:, 1] != 0, batch[:, 1], media)
    features = media[0][0]
    assert embeds.shape[1] == batch.shape[2] + features.shape[1] - 1  # the same length for every batch
    table = decoder.lm.get_input_embeddings()
    for row in range(len(batch)):  # by hand: text embeddings, with the placeholder swapped for the features
        ids = batch[row, 0][batch[row, 1] != 0].tolist()
        at = ids.index(decoder.placeholder_ids[0])
        expected = torch.cat([table(torch.tensor(ids[:at])), features[row], table(torch.tensor(ids[at + 1:]))])
        assert int(lengths[row]) == len(expected)
        torch.testing.assert_close(embeds[row, : len(expected)], expected)
        assert attention[row, : len(expected)].all() and not attention[row, len(expected):].any()
        assert (labels[row, at: at + features.shape[1]] == -100).all()  # media are never a target


@torch.no_grad()
def test_the_count_of_media_tokens_comes_from_the_encoder() -> None:
    merged = task({"projector": {"type": "patch_merge", "merge": 4}})
    for tokens in (16, 9):  # a 4x4 grid -> 2x2 blocks; 9 tokens -> runs of 4 (the last one padded)
        media = merged.decoder._media(rep(tokens=tokens))
        assert media[0][0].shape[1] == -(-tokens // 4)
        batch = targets(merged)
        embeds, _, _, lengths = merged.decoder._sequence(batch[:, 0], batch[:, 1] != 0, batch[:, 1], media)
        assert embeds.shape[1] == batch.shape[2] - 1 + media[0][0].shape[1]


@torch.no_grad()
def test_a_batch_generates_what_each_row_generates_alone() -> None:
    chat = task()
    prompts = targets(chat, [t[:1] for t in TURNS])  # questions of different lengths: left padding differs
    together = chat.predict(rep(), {"c": prompts}, max_new_tokens=5)
    for row in range(len(prompts)):
        alone = chat.predict(rep().__class__(encoded={k: EncoderOutput(v.tokens[row:row + 1], v.mask[row:row + 1],
                                                                        v.pooled[row:row + 1])
                                                      for k, v in rep().encoded.items()},
                                             inputs={k: EncoderOutput(v.tokens[row:row + 1], v.mask[row:row + 1],
                                                                      v.pooled[row:row + 1])
                                                     for k, v in rep().inputs.items()}),
                             {"c": prompts[row:row + 1]}, max_new_tokens=5)
        assert together[row, : alone.shape[1]].tolist() == alone[0].tolist()


def test_training_learns_the_answers_and_a_missing_image_is_masked() -> None:
    chat = task().train()
    batch, memory = targets(chat), rep(missing=(2,))
    optimizer = torch.optim.Adam(chat.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        optimizer.zero_grad()
        loss = chat.loss(memory, {"c": batch})
        first = first if first is not None else float(loss.detach())
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < first / 4
    chat.eval()
    with torch.no_grad():
        said = [r["text"] for r in chat.decode(chat.predict(memory, {"c": targets(chat, [t[:1] for t in TURNS])}))]
    assert said[:2] == ["red", "a round circle"]


def test_without_gradients_the_logits_come_a_few_rows_at_a_time_and_score_the_same(monkeypatch) -> None:
    from mmcli.objectives.decoders import _common

    chat = task()
    batch, memory = targets(chat), rep(missing=(2,))
    decoder, target = chat.decoder, batch
    with torch.no_grad():  # by hand: the whole batch in one forward, cross-entropy over the answer tokens
        media = decoder._media(memory)
        embeds, attention, labels, _ = decoder._sequence(target[:, 0], target[:, 1] != 0, target[:, 1], media)
        logits = decoder.lm(inputs_embeds=embeds, attention_mask=attention.long()).logits[:, :-1]
        labels = labels[:, 1:]
        expected_loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        chosen = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        expected_log_prob = (chosen * (labels != -100)).sum(1)
    one_row = embeds.shape[1] * decoder.lm.get_input_embeddings().num_embeddings
    monkeypatch.setattr(_common, "LOGITS_PER_CHUNK", one_row)
    forwards = []
    decoder.lm.register_forward_hook(lambda module, args, kwargs_out=None: forwards.append(1))
    with torch.no_grad():
        torch.testing.assert_close(decoder.loss(memory, {}, target), expected_loss)
        assert len(forwards) == len(target)  # one row per forward
        torch.testing.assert_close(decoder.sequence_log_prob(memory, None, target), expected_log_prob)
    forwards.clear()
    torch.testing.assert_close(decoder.loss(memory, {}, target), expected_loss)  # training: the batch at once
    assert len(forwards) == 1


def test_projectors_map_tokens_to_the_language_model_width() -> None:
    tokens, mask = torch.randn(2, 6, D), torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    for kind in ("linear", "mlp", "patch_merge", "perceiver"):
        out, out_mask = build_projector(ProjectorSettings(type=kind, merge=2, latents=4, heads=4), D, 32)(tokens, mask)
        assert out.shape[0] == 2 and out.shape[2] == 32 and torch.isfinite(out).all()
        assert out_mask.shape == out.shape[:2]
    resampler = build_projector(ProjectorSettings(type="perceiver", latents=4, heads=4), D, 32).eval()
    changed = tokens.clone()
    changed[1, 3:] = 99.0  # padded tokens are never attended to
    torch.testing.assert_close(resampler(tokens, mask)[0][1], resampler(changed, mask)[0][1])
    none, none_mask = resampler(tokens, torch.zeros_like(mask))
    assert torch.isfinite(none).all() and not none_mask.any()


@torch.no_grad()
def test_gated_cross_attention_starts_as_the_plain_language_model() -> None:
    flamingo = task({"conditioning": "cross_attention", "cross_attention": {"every": 1, "heads": 4}})
    plain = task()
    batch = targets(flamingo)
    plain.decoder.lm.load_state_dict({k.replace(".layer.", "."): v for k, v in flamingo.decoder.lm.state_dict().items()
                                      if ".cross." not in k}, strict=True)
    # with the media dropped from the prompt and the gates closed, both read the same text
    ids = batch[:, 0].masked_fill(batch[:, 0] == flamingo.decoder.placeholder_ids[0], flamingo.decoder.pad_id)
    flamingo.decoder._set_media(flamingo.decoder._media(rep()))
    gated = flamingo.decoder.lm(input_ids=ids).logits
    torch.testing.assert_close(gated, plain.decoder.lm(input_ids=ids).logits)
    gates = [p for n, p in flamingo.decoder.lm.named_parameters() if n.endswith("_gate")]
    assert gates and all(float(g) == 0.0 for g in gates)


@torch.no_grad()
def test_lora_merged_into_the_weights_answers_as_the_adapted_model() -> None:
    from transformers import AutoModelForCausalLM

    from mmcli.models.adapters import merged_state

    chat = task()
    from peft import LoraConfig, inject_adapter_in_model

    lm = chat.decoder.lm
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"), lm)
    for name, parameter in lm.named_parameters():
        if "lora_B" in name:  # as after training: the adapters change the answer
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    merged = AutoModelForCausalLM.from_config(lm.config)
    merged.load_state_dict(merged_state(lm), strict=True)
    ids = targets(chat)[:, 0]
    adapted = lm(input_ids=ids).logits
    assert (adapted - merged(input_ids=ids).logits).abs().max() <= 1e-4
    plain = AutoModelForCausalLM.from_config(lm.config)
    plain.load_state_dict({k.replace(".base_layer.", "."): v for k, v in lm.state_dict().items() if "lora_" not in k})
    assert (adapted - plain(input_ids=ids).logits).abs().max() > 1e-2  # the adapters mattered
    greedy = dict(max_new_tokens=6, do_sample=False, pad_token_id=chat.decoder.pad_id)
    assert lm.generate(input_ids=ids[:, :5], **greedy).tolist() == merged.generate(input_ids=ids[:, :5], **greedy).tolist()


def test_a_folder_of_another_kind_of_model_and_a_missing_lora_target_are_one_line(tmp_path) -> None:
    from transformers import ViTConfig, ViTModel

    from mmcli.models.adapters import AdapterSettings, add_adapters

    chat = task()
    chat.decoder.tokenizer.save_pretrained(tmp_path / "vit")
    ViTModel(ViTConfig(image_size=8, patch_size=4, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)).save_pretrained(tmp_path / "vit")
    with pytest.raises(RecipeError, match="holds no causal language model") as caught:
        task({"config": None, "path": str(tmp_path / "vit")})
    assert "\n" not in caught.value.one_line()
    model = torch.nn.Module()
    model.objectives = torch.nn.ModuleDict({"c": chat})
    with pytest.raises(RecipeError, match="training.adapters.target_modules") as caught:
        add_adapters(model, AdapterSettings(target_modules=["no_such_proj"]))
    assert "q_proj" in caught.value.one_line()


def test_a_pretrained_tokenizer_without_placeholders_gets_them_as_special_tokens(tmp_path) -> None:
    """A downloaded model's tokenizer knows no <image>: loading it adds the placeholders (and a chat
    template), each one token, the same ids after saving and loading again."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from mmcli.objectives.decoders.lm_tokenizer import pretrained_tokenizer

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "what": 1, "colour": 2, "</s>": 3}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]", eos_token="</s>").save_pretrained(tmp_path / "lm")
    loaded = pretrained_tokenizer(str(tmp_path / "lm"), ["<image>", "<audio>"], "tasks.chat.decoder.path")
    ids = loaded("what <image> colour <audio>").input_ids
    assert len(ids) == 4 and ids[1] == loaded.convert_tokens_to_ids("<image>") >= 4 and loaded.chat_template
    again = pretrained_tokenizer(str(tmp_path / "lm"), ["<image>", "<audio>"], "tasks.chat.decoder.path")
    assert again("what <image> colour <audio>").input_ids == ids
