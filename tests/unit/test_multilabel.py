"""The multi-label task (event detection): label sets as cells, thresholds tuned per class, metrics
against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score

from mmcli.errors import BadValue
from mmcli.objectives.base import BuildContext
from mmcli.objectives.multilabel import LabelSets, MultilabelConfig, best_f1_threshold
from mmcli.registries import OBJECTIVES

CLASSES = ["beep", "flash", "hum"]


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    return OBJECTIVES.build(MultilabelConfig(column="events"),
                            context=BuildContext(name="events", hidden_size=8, inputs={}, target_spec={"classes": CLASSES}))


def test_cells_are_sets_in_any_of_their_spellings() -> None:
    codec = LabelSets().fit(["beep;hum", "flash", "none", None, '["hum"]', ["beep", "flash"]])
    assert codec.classes == CLASSES
    encoded = codec.encode(["hum; beep", "none", None, '["flash", "hum"]', ("flash",)])
    assert encoded[0].tolist() == [1, 0, 1] and encoded[1].tolist() == [0, 0, 0]
    assert np.isnan(encoded[2]).all() and codec.labelled(encoded).tolist() == [True, True, False, True, True]
    assert encoded[3].tolist() == [0, 1, 1] and encoded[4].tolist() == [0, 1, 0]
    with pytest.raises(BadValue, match="unknown label 'siren'"):
        codec.encode(["beep;siren"])
    with pytest.raises(BadValue, match="not a JSON list"):
        codec.encode(["[beep"])


def test_the_loss_skips_rows_without_labels_and_counts_every_class() -> None:
    task = build()
    logits = torch.randn(3, 3)
    target = torch.tensor([[1.0, 0.0, 1.0], [float("nan")] * 3, [0.0, 0.0, 0.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], target[[0, 2]])
    torch.testing.assert_close(task.prediction_loss(logits, target), expected)
    empty = task.prediction_loss(logits, torch.full((3, 3), float("nan")))
    assert float(empty) == 0.0


def test_a_threshold_is_chosen_for_the_best_f1_of_its_class() -> None:
    probability = torch.tensor([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    truth = torch.tensor([0, 0, 1, 1, 1, 1])
    threshold = best_f1_threshold(probability, truth)
    assert 0.2 < threshold <= 0.3  # every positive above it, every negative below
    assert best_f1_threshold(probability, torch.zeros(6, dtype=torch.long)) == 0.5  # no positive: nothing to tune


def test_metrics_equal_scikit_learn_at_the_tuned_thresholds() -> None:
    task = build()
    generator = torch.Generator().manual_seed(0)
    truth = (torch.rand(60, 3, generator=generator) < 0.4).float()
    logits = 2 * truth - 1 + torch.randn(60, 3, generator=generator)
    chosen = task.calibrate(logits, truth)
    assert set(chosen["thresholds"]) == set(CLASSES) and chosen["rows"] == 60
    metrics = task.score(logits, truth)
    probabilities = torch.sigmoid(logits).numpy()
    assert metrics["mean_average_precision"] == pytest.approx(average_precision_score(truth.numpy(), probabilities,
                                                                                    average="macro"))
    decided = (probabilities >= task.thresholds.numpy()).astype(int)
    assert metrics["micro_f1"] == pytest.approx(f1_score(truth.numpy(), decided, average="micro"))
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth.numpy(), decided, average="macro"))
    assert metrics["per_class_f1"]["hum"] == pytest.approx(f1_score(truth[:, 2].numpy(), decided[:, 2]))
    untuned = build().score(logits, truth)
    assert metrics["macro_f1"] >= untuned["macro_f1"]  # tuned on these very rows: never worse than 0.5


def test_decoding_names_the_labels_above_their_thresholds() -> None:
    task = build()
    task.thresholds.copy_(torch.tensor([0.5, 0.9, 0.1]))
    rows = task.decode(torch.logit(torch.tensor([[0.6, 0.8, 0.2], [0.1, 0.95, 0.05]])))
    assert rows[0]["labels"] == ["beep", "hum"] and rows[1]["labels"] == ["flash"]
    assert rows[0]["probabilities"]["flash"] == pytest.approx(0.8)
