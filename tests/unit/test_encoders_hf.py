"""Pretrained (``type: hf``) encoders on tiny models made from a config and saved to a temp directory (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmcli.errors import MmcliError, RecipeError
from mmcli.models.encoders.hf import AudioHFConfig, ImageHFConfig, TextHFConfig, hub_offline
from mmcli.models.outputs import EncoderOutput
from mmcli.registries import ENCODERS
from test_encoders import B, D, make_input, scramble_padding

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Tiny BERT (+ a WordPiece tokenizer), ViT (+ processor stats), CLIP vision tower, AST, and a wav2vec2 config."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    paths = {}
    bert = root / "bert"
    transformers.BertModel(transformers.BertConfig(vocab_size=100, max_position_embeddings=32, **SMALL)).save_pretrained(bert)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "on", "mat", "big", "red"]
    (root / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(100 - len(words))]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(bert)
    paths["bert"] = str(bert)
    vit = root / "vit"
    transformers.ViTModel(transformers.ViTConfig(image_size=16, patch_size=8, **SMALL)).save_pretrained(vit)
    (vit / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    paths["vit"] = str(vit)
    clip = root / "clip"
    transformers.CLIPVisionModel(transformers.CLIPVisionConfig(image_size=16, patch_size=8, **SMALL)).save_pretrained(clip)
    paths["clip"] = str(clip)
    clip_full = root / "clip_full"  # a whole CLIP checkpoint (text + vision): only the vision tower is loaded
    tiny = dict(SMALL, max_position_embeddings=16, vocab_size=50)
    transformers.CLIPModel(transformers.CLIPConfig(text_config=tiny, vision_config=dict(SMALL, image_size=16, patch_size=8),
                                                   projection_dim=16)).save_pretrained(clip_full)
    paths["clip_full"] = str(clip_full)
    siglip = root / "siglip"
    transformers.SiglipVisionModel(transformers.SiglipVisionConfig(image_size=16, patch_size=8, **SMALL)).save_pretrained(siglip)
    paths["siglip"] = str(siglip)
    ast = root / "ast"
    transformers.ASTModel(transformers.ASTConfig(patch_size=4, frequency_stride=4, time_stride=4, max_length=16,
                                                 num_mel_bins=8, **SMALL)).save_pretrained(ast)
    paths["ast"] = str(ast)
    wav2vec2 = root / "wav2vec2"
    transformers.Wav2Vec2Config(**SMALL).save_pretrained(wav2vec2)  # the config is all the refusal needs
    paths["wav2vec2"] = str(wav2vec2)
    return paths


# (modality, model fixture key, extra settings)
CASES = [("text", "bert", {"pooling": "mean"}), ("text", "bert", {"pooling": "cls"}),
         ("image", "vit", {"pooling": "cls"}), ("image", "vit", {"pooling": "mean"}), ("image", "clip", {}),
         ("image", "clip_full", {"pooling": "mean"}), ("image", "siglip", {}),
         ("audio", "ast", {"pooling": "cls"}), ("audio", "ast", {"pooling": "mean"})]
IDS = ["-".join([m, k, *map(str, extra.values())]) for m, k, extra in CASES]
CONFIGS = {"text": TextHFConfig, "image": ImageHFConfig, "audio": AudioHFConfig}


def build(modality: str, path: str, spec: dict, **settings: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return ENCODERS[modality].build(CONFIGS[modality](model=path, **settings), spec=spec, hidden_size=D)


@pytest.mark.parametrize("modality,key,extra", CASES, ids=IDS)
def test_shapes_masks_and_missing_row(models: dict, modality: str, key: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, models[key], spec, **extra).eval()
    out = encoder(x, mask)
    assert isinstance(out, EncoderOutput)
    assert out.tokens.dim() == 3 and out.tokens.shape[0] == B and out.tokens.shape[2] == D
    assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == torch.bool
    assert out.pooled.shape == (B, D) and torch.isfinite(out.pooled).all() and torch.isfinite(out.tokens).all()
    assert out.present.tolist() == [True, True, True, False]
    assert (out.tokens[~out.mask] == 0).all()
    torch.testing.assert_close(out.pooled[3], encoder.missing.detach())
    if modality == "text":
        assert torch.equal(out.mask, mask)


@pytest.mark.parametrize("modality,key,extra", CASES, ids=IDS)
def test_all_rows_missing(models: dict, modality: str, key: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, models[key], spec, **extra).train()
    out = encoder(torch.zeros_like(x), torch.zeros_like(mask))
    assert not out.mask.any() and (out.tokens == 0).all()
    torch.testing.assert_close(out.pooled, encoder.missing.detach().expand(B, D))


@pytest.mark.parametrize("modality,key,extra", CASES, ids=IDS)
def test_padding_does_not_change_outputs(models: dict, modality: str, key: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, models[key], spec, **extra).eval()
    with torch.no_grad():
        a = encoder(x, mask)
        b = encoder(scramble_padding(modality, x, mask), mask)
    torch.testing.assert_close(a.pooled, b.pooled)
    torch.testing.assert_close(a.tokens, b.tokens)


@pytest.mark.parametrize("modality,key,extra", CASES, ids=IDS)
def test_frozen_model_gets_no_gradient_and_stays_in_eval(models: dict, modality: str, key: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, models[key], spec, **extra).train()
    assert not encoder.model.training  # frozen: no dropout even while the rest trains
    out = encoder(x, mask)
    torch.testing.assert_close(out.pooled, encoder(x, mask).pooled)  # deterministic in train mode
    (out.pooled * torch.randn(B, D)).sum().add_((out.tokens * torch.randn_like(out.tokens)).sum()).backward()
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias", "missing"}
    for name, p in encoder.named_parameters():
        if name in trainable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


UNFROZEN = [0, 2, 7]  # text bert, image vit, audio ast


@pytest.mark.parametrize("modality,key,extra", [CASES[i] for i in UNFROZEN], ids=[IDS[i] for i in UNFROZEN])
def test_unfrozen_model_trains(models: dict, modality: str, key: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, models[key], spec, freeze=False, **extra).train()
    assert encoder.model.training
    out = encoder(x, mask)
    (out.pooled * torch.randn(B, D)).sum().add_((out.tokens * torch.randn_like(out.tokens)).sum()).backward()
    grads = {n: p.grad for n, p in encoder.model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None for g in grads.values())
    assert all(not p.requires_grad for n, p in encoder.model.named_parameters() if n.startswith("pooler."))


def test_text_hidden_states_match_the_model(models: dict) -> None:
    """The un-projected mean pooling is the model's own output averaged over real tokens (padding excluded)."""
    spec, x, mask = make_input("text")
    encoder = build("text", models["bert"], spec, pooling="mean").eval()
    reference = transformers.AutoModel.from_pretrained(models["bert"]).eval()
    hidden, pooled = encoder.hidden_states(x, mask)
    with torch.no_grad():
        for row in range(3):
            n = int(mask[row].sum())
            expected = reference(input_ids=x[row : row + 1, :n]).last_hidden_state[0]
            torch.testing.assert_close(hidden[row, :n], expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(pooled[row], expected.mean(dim=0), atol=1e-5, rtol=1e-5)
    assert (pooled[3] == 0).all()


def test_text_processor_and_encoder_share_the_tokenizer(models: dict) -> None:
    from mmcli.data.processors.text import TextConfig, TextProcessor

    proc = TextProcessor(TextConfig(tokenizer="hf", tokenizer_path=models["bert"], max_length=8), "txt")
    proc.fit({"txt": []})
    batch = proc.transform({"txt": ["the big red cat sat on the mat", "a dog", ""]})
    spec = json.loads(json.dumps(proc.spec()))
    encoder = build("text", models["bert"], spec).eval()
    out = encoder(torch.as_tensor(batch["txt"]).long(), torch.as_tensor(batch["txt_mask"]))
    assert out.present.tolist() == [True, True, False] and out.mask.sum(1).tolist() == [8, 4, 0]


def test_image_processor_statistics(models: dict) -> None:
    spec, _, _ = make_input("image")
    vit, clip = build("image", models["vit"], spec), build("image", models["clip"], spec)
    assert vit.mean.flatten().tolist() == [0.5] * 3 and vit.std.flatten().tolist() == [0.5] * 3
    torch.testing.assert_close(clip.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))  # no processor: ImageNet
    assert vit.pixels(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)).shape == (1, 3, 16, 16)


def test_image_grey_input(models: dict) -> None:
    spec, x, mask = make_input("image", channels=1)
    out = build("image", models["vit"], spec)(x, mask)
    assert out.pooled.shape == (B, D) and out.present.tolist() == [True, True, True, False]


def test_audio_patch_mask_follows_real_frames(models: dict) -> None:
    spec, x, mask = make_input("audio", missing=None)  # 10, 7, 3, 1 real frames of 10
    encoder = build("audio", models["ast"], spec).eval()
    assert (encoder.freq_patches, encoder.time_patches) == (2, 4)
    out = encoder(x, mask)
    real_patches = out.mask[:, 2:].view(B, 2, 4)
    assert out.mask[:, :2].all()  # [CLS] and distillation tokens
    assert real_patches[0].all() and (real_patches[:, 0] == real_patches[:, 1]).all()
    counts = real_patches[:, 0].sum(dim=1).tolist()
    assert counts[0] == 4 and counts == sorted(counts, reverse=True) and counts[3] >= 1 and counts[3] < 4


def test_video_with_a_pretrained_frame_encoder(models: dict) -> None:
    from mmcli.models.encoders.video import VideoFramesConfig

    spec, x, mask = make_input("video")
    config = VideoFramesConfig(frame_encoder={"type": "hf", "model": models["vit"]}, temporal="transformer")
    torch.manual_seed(0)
    encoder = ENCODERS["video"].build(config, spec=spec, hidden_size=D).train()
    out = encoder(x, mask)
    assert out.pooled.shape == (B, D) and out.present.tolist() == [True, True, True, False]
    assert not encoder.frame_encoder.model.training


def test_bogus_model_id_is_a_one_line_recipe_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_offline()
    spec, _, _ = make_input("text")
    for modality in ("text", "image", "audio"):
        with pytest.raises(RecipeError) as err:
            build(modality, "no-such-org/no-such-model", make_input(modality)[0])
        line = err.value.one_line()
        assert "\n" not in line
        assert line == (f"recipe error: inputs.<{modality} input>.encoder.model: cannot load 'no-such-org/no-such-model' "
                        "(offline: no local copy; pass a local directory)")
    with pytest.raises(RecipeError, match="inputs.review.encoder.model: cannot load '/nonexistent/dir'"):
        build("text", "/nonexistent/dir", {**spec, "input": "review"})


def test_waveform_models_are_refused(models: dict) -> None:
    spec, _, _ = make_input("audio")
    with pytest.raises(RecipeError, match="is a 'wav2vec2' model") as err:
        build("audio", models["wav2vec2"], spec)
    assert "raw-waveform" in err.value.one_line()


def test_tokenizer_must_match(models: dict) -> None:
    spec, _, _ = make_input("text")
    with pytest.raises(RecipeError, match="tokenizer has 500 tokens"):
        build("text", models["bert"], {**spec, "vocab_size": 500})
    with pytest.raises(RecipeError, match="needs its own tokenizer"):
        build("text", models["bert"], {**spec, "tokenizer_json": "{}", "config": {"tokenizer": "wordpiece"}})
    with pytest.warns(UserWarning, match="same vocabulary"):
        build("text", models["bert"], {**spec, "tokenizer_path": models["vit"]})


def test_uninstalled_model_package() -> None:
    spec, _, _ = make_input("text")
    with pytest.raises(MmcliError, match="model package 'no-such-model-pkg' is not installed") as err:
        build("text", "pkg:no-such-model-pkg", spec)
    assert "pip install no-such-model-pkg" in err.value.one_line()


def test_model_is_required() -> None:
    from pydantic import ValidationError

    for config in CONFIGS.values():
        with pytest.raises(ValidationError):
            config()
    assert Path(TextHFConfig(model="x").model).name == "x"
