"""The text task: its target codec, teacher-forced training, and search (greedy, beams, sampling) through
transformers' generation utilities, checked against hand-written step-by-step decoding."""

from __future__ import annotations

import json

import pytest
import torch

from mmcli.errors import BadValue
from mmcli.models.outputs import EncoderOutput
from mmcli.models.representation import Representation
from mmcli.objectives.base import BuildContext
from mmcli.objectives.text import TextConfig
from mmcli.registries import OBJECTIVES

D, T = 16, 3
TEXTS = ["a red circle moving left", "a blue square moving up", "a green triangle moving down", "a red square"]


def build(max_length: int = 8, **settings: object) -> torch.nn.Module:
    config = TextConfig(column="y", max_length=max_length, decoder={"type": "transformer", "layers": 1, "heads": 2,
                                                                   "dropout": 0.0}, **settings)
    spec = json.loads(json.dumps(config.target_codec().fit(TEXTS).spec()))
    torch.manual_seed(0)
    return OBJECTIVES.build(config, context=BuildContext(name="y", hidden_size=D, inputs={"x": "image"}, target_spec=spec))


def rep(memory: torch.Tensor, mask: torch.Tensor | None = None) -> Representation:
    mask = torch.ones(memory.shape[:2], dtype=torch.bool) if mask is None else mask
    encoded = {"x": EncoderOutput(tokens=memory, mask=mask, pooled=memory.mean(dim=1))}
    return Representation(encoded=encoded, inputs=encoded)


def trained(steps: int = 150) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A task that learnt to say each of TEXTS from its own memory (four fixed random memories)."""
    task = build()
    memory = torch.randn(len(TEXTS), T, D, generator=torch.Generator().manual_seed(1))
    target = torch.as_tensor(task.codec.encode(TEXTS))
    optimizer = torch.optim.Adam(task.parameters(), lr=3e-3)
    task.train()
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            task.loss(rep(memory), {"y": target}).backward()
            optimizer.step()
    return task.eval(), memory, target


def test_codec_wraps_texts_in_start_and_end_tokens_and_decodes_them_back() -> None:
    codec = TextConfig(column="y", max_length=8).target_codec().fit(TEXTS)
    ids = codec.encode(["A red  circle", None, "a red square moving up up up up up"])
    assert ids.shape == (3, 8) and ids.dtype == codec.dtype
    assert ids[0, 0] == codec.bos_id and codec.eos_id in ids[0].tolist() and ids[0, 5:].tolist() == [0, 0, 0]
    assert ids[1].tolist() == [0] * 8 and codec.labelled(ids).tolist() == [True, False, True]
    assert ids[2, -1] == codec.eos_id  # cut to max_length, the end token kept
    assert codec.decode(ids[:1].tolist()) == ["a red circle"]
    restored = TextConfig(column="y", max_length=8).target_codec(json.loads(json.dumps(codec.spec())))
    assert restored.encode(["a blue square"]).tolist() == codec.encode(["a blue square"]).tolist()
    with pytest.raises(BadValue, match="not a string"):
        codec.encode([{"text": "x"}])


def test_teacher_forced_training_learns_to_say_each_text() -> None:
    task, memory, target = trained()
    assert float(task.loss(rep(memory), {"y": target}).detach()) < 0.1
    said = [row["text"] for row in task.decode(task.predict(rep(memory)))]
    assert said == TEXTS


def test_rows_without_a_target_count_for_nothing_in_the_loss() -> None:
    task, memory, target = trained(steps=20)
    without = target.clone()
    without[1] = 0
    loss = task.loss(rep(memory), {"y": without})
    kept = task.loss(rep(memory[[0, 2, 3]]), {"y": target[[0, 2, 3]]})
    torch.testing.assert_close(loss, kept)
    nothing = task.loss(rep(memory), {"y": torch.zeros_like(target)})
    assert float(nothing) == 0.0 and nothing.requires_grad


@torch.no_grad()
def test_greedy_search_equals_step_by_step_argmax_without_a_cache() -> None:
    task, _, _ = trained(steps=40)
    memory = torch.randn(5, T, D, generator=torch.Generator().manual_seed(7))
    mask = torch.ones(5, T, dtype=torch.bool)
    mask[2, 1:] = False  # a row with padded memory
    generated = task.predict(rep(memory, mask))
    encoded, keep = task.decoder.memory(rep(memory, mask))
    codec = task.codec
    for row in range(5):
        ids = [codec.bos_id]
        for _ in range(generated.shape[1]):
            logits = task.decoder.lm(input_ids=torch.tensor([ids]), encoder_hidden_states=encoded[row:row + 1],
                                     encoder_attention_mask=keep[row:row + 1].long(), use_cache=False).logits
            ids.append(int(logits[0, -1].argmax()))
            if ids[-1] == codec.eos_id:
                break
        by_hand = ids[1:] + [codec.pad_id] * (generated.shape[1] - len(ids) + 1)
        assert generated[row].tolist() == by_hand


@torch.no_grad()
def test_one_beam_is_greedy_and_more_beams_score_at_least_as_high_on_average() -> None:
    task, _, _ = trained(steps=30)  # half-trained: answers are not all obvious
    memory = torch.randn(24, T, D, generator=torch.Generator().manual_seed(3))
    greedy = task.predict(rep(memory))
    torch.testing.assert_close(task.predict(rep(memory), num_beams=1), greedy)
    beams = task.predict(rep(memory), num_beams=4, length_penalty=0.0)  # plain sums of log-probabilities

    def score(ids: torch.Tensor) -> torch.Tensor:
        start = torch.full((len(ids), 1), task.codec.bos_id)
        return task.decoder.sequence_log_prob(rep(memory), None, torch.cat([start, ids], dim=1))

    assert float(score(beams).mean()) >= float(score(greedy).mean())
    assert (score(beams) >= score(greedy) - 1e-4).float().mean() >= 0.75  # and for most rows one by one
    assert (score(beams) > score(greedy) + 1e-3).any()  # the beams did search


@torch.no_grad()
def test_sampling_is_reproducible_and_leaves_the_global_random_state_alone() -> None:
    task, memory, _ = trained(steps=10)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = task.predict(rep(memory), do_sample=True, temperature=2.0, seed=5)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(task.predict(rep(memory), do_sample=True, temperature=2.0, seed=5), first)
    others = [task.predict(rep(memory), do_sample=True, temperature=2.0, seed=s) for s in range(6, 10)]
    assert any(not torch.equal(other, first) for other in others)


def test_search_settings_are_checked() -> None:
    task = build()
    with pytest.raises(ValueError, match="choose sampling or beam search"):
        task.settings(do_sample=True, num_beams=3)
    assert set(task.decoding_options()) >= {"num_beams", "length_penalty", "top_p", "temperature"}


def test_answers_of_different_lengths_are_padded_when_gathered() -> None:
    task = build()
    gathered = task.collate([torch.tensor([[5, 3]]), torch.tensor([[7, 8, 3], [9, 3, 0]])])
    assert gathered.tolist() == [[5, 3, 0], [7, 8, 3], [9, 3, 0]]


def test_metrics_of_a_perfect_answer_and_of_a_wrong_one() -> None:
    task = build()
    target = torch.as_tensor(task.codec.encode(TEXTS))
    perfect = task.score(target[:, 1:], target)
    assert perfect["bleu"] == pytest.approx(1.0) and perfect["vqa_accuracy"] == 1.0 and perfect["count"] == 4
    wrong = task.score(target.flip(0)[:, 1:], target)
    assert wrong["vqa_accuracy"] == 0.0 and wrong["cider"] < perfect["cider"]
