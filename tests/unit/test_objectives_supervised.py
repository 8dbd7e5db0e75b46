"""Supervised objectives (task types): shapes, losses that skip missing labels, decoding, metric inputs
and target codecs, for every registered task type."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mmcli.models.outputs import FusionOutput
from mmcli.models.representation import Representation
from mmcli.objectives._supervised import HeadTask
from mmcli.objectives.base import BuildContext
from mmcli.registries import OBJECTIVES

B, D = 4, 16
# every built-in task type with a head on the fused vector (text generation has its own tests; task types
# other test files register are theirs to test)
TASKS = [name for name in OBJECTIVES.names() if issubclass(OBJECTIVES.get(name), HeadTask)
         and OBJECTIVES.get(name).__module__.startswith("mmcli.")]
NAN = float("nan")
# per task type: its preprocessing spec, a target batch whose row 1 has no label, and that missing value
FIXTURES = {
    "classification": ({"classes": ["cat", "dog", "eel"]}, torch.tensor([0, -100, 2, 1]), -100),
    "regression": ({"mean": 10.0, "std": 2.0}, torch.tensor([0.5, NAN, -1.0, 0.0]), NAN),
    "multilabel": ({"classes": ["beep", "flash", "hum"]},
                   torch.tensor([[1.0, 0.0, 1.0], [NAN, NAN, NAN], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), NAN),
}
# per task type: manifest cells for its codec, the third one without a label
CELLS = {"classification": ["cat", "dog", None, "cat"], "regression": [1.0, 3.0, None, 5.0],
         "multilabel": ["beep;hum", "flash", None, "none"]}


def config_class(name: str) -> type:
    return dict(zip(OBJECTIVES.names(), OBJECTIVES.configs()))[name]


def build(name: str, **settings: object) -> torch.nn.Module:
    assert name in FIXTURES, f"add a FIXTURES entry for the new task type '{name}'"
    config = config_class(name)(column="y", **settings)
    torch.manual_seed(0)
    return OBJECTIVES.build(config, context=BuildContext(name="y", hidden_size=D, inputs={}, target_spec=FIXTURES[name][0]))


def run(task: torch.nn.Module, fused: torch.Tensor) -> torch.Tensor:
    """The task's prediction from a fused vector (a representation holding only that)."""
    return task.predict(Representation(encoded={}, inputs={}, fusion=FusionOutput(fused)))


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("hidden", [None, 8])
def test_forward_and_gradients(name: str, hidden: int | None) -> None:
    task = build(name, hidden=hidden).train()
    pred = run(task, torch.randn(B, D))
    assert pred.shape[0] == B
    task.prediction_loss(pred, FIXTURES[name][1]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in task.parameters())


@pytest.mark.parametrize("name", TASKS)
def test_loss_ignores_missing_labels(name: str) -> None:
    task, target = build(name).eval(), FIXTURES[name][1]
    pred = run(task, torch.randn(B, D))
    changed = pred.clone()
    changed[1] = changed[1] + 7.0  # the unlabelled row's prediction must not matter
    assert torch.isfinite(task.prediction_loss(pred, target))
    torch.testing.assert_close(task.prediction_loss(pred, target), task.prediction_loss(changed, target))


@pytest.mark.parametrize("name", TASKS)
def test_batch_without_labels_gives_zero_loss_with_grad(name: str) -> None:
    task = build(name)
    pred = run(task, torch.randn(B, D))
    missing = torch.full_like(FIXTURES[name][1], FIXTURES[name][2])
    loss = task.prediction_loss(pred, missing)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


@pytest.mark.parametrize("name", TASKS)
def test_decode_and_metric_inputs_are_plain_python(name: str) -> None:
    task, target = build(name).eval(), FIXTURES[name][1]
    pred = run(task, torch.randn(B, D))
    rows = task.decode(pred)
    assert len(rows) == B and json.loads(json.dumps(rows)) == rows
    predictions, references = task.metric_inputs(pred, target)
    assert len(predictions) == len(references) == B - 1
    flat = [v for row in predictions + references for v in (row if isinstance(row, list) else [row])]
    assert all(isinstance(v, (int, float)) and not math.isnan(v) for v in flat)
    assert isinstance(task.metrics, dict) and task.main_metric in task.metrics
    assert all(isinstance(greater, bool) for greater in task.metrics.values())


def test_classification_decoding() -> None:
    task = build("classification")
    rows = task.decode(torch.tensor([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]]))
    assert [r["label"] for r in rows] == ["dog", "cat"]
    assert set(rows[0]["probabilities"]) == {"cat", "dog", "eel"}
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1.0)
    assert task.metric_inputs(torch.eye(3)[[1, 0, 2, 2]], torch.tensor([1, -100, 0, 2])) == ([1, 2, 2], [1, 0, 2])


def test_regression_uses_original_units() -> None:
    task = build("regression")  # mean 10, std 2
    assert task.decode(torch.tensor([0.0, 1.5])) == [{"value": 10.0}, {"value": 13.0}]
    preds, refs = task.metric_inputs(torch.tensor([1.0, 0.0, -1.0]), torch.tensor([0.5, float("nan"), -1.0]))
    assert preds == [12.0, 8.0] and refs == [11.0, 8.0]


def test_label_smoothing_changes_loss() -> None:
    logits, target = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
    plain, smooth = build("classification"), build("classification", label_smoothing=0.2)
    assert smooth.prediction_loss(logits, target) > plain.prediction_loss(logits, target)


@pytest.mark.parametrize("name", TASKS)
def test_config_validation(name: str) -> None:
    config = config_class(name)
    assert config(column="y").weight == 1.0 and config(column="y").type == name
    with pytest.raises(ValidationError):
        config(column="y", weight=-1)
    with pytest.raises(ValidationError):
        config(column="y", unknown=1)


@pytest.mark.parametrize("name", TASKS)
def test_target_codec_round_trips_through_its_spec(name: str) -> None:
    values = CELLS[name]
    codec = config_class(name)(column="y").target_codec().fit(values)
    encoded = codec.encode(values)
    assert encoded.dtype == codec.dtype and len(encoded) == len(values)
    restored = config_class(name)(column="y").target_codec(json.loads(json.dumps(codec.spec())))
    torch.testing.assert_close(torch.as_tensor(restored.encode(values)), torch.as_tensor(encoded), equal_nan=True)
    assert codec.labelled(encoded).tolist() == [True, True, False, True]
    torch.testing.assert_close(torch.as_tensor(encoded[2]), torch.as_tensor(np.asarray(codec.missing, encoded.dtype)),
                               equal_nan=True)
