"""Loss weightings: static sums with the recipe weights, uncertainty weights are learnt with the model,
dynamic weight average follows its formula and is saved with the model."""

from __future__ import annotations

import math

import pytest
import torch

from mmcli.weighting.dwa import DwaWeighting, DwaWeightingConfig
from mmcli.weighting.static import StaticWeighting, StaticWeightingConfig
from mmcli.weighting.uncertainty import UncertaintyWeighting, UncertaintyWeightingConfig
from tests.unit import model_fixtures

LOSSES = {"label": torch.tensor(2.0), "score": torch.tensor(4.0)}
WEIGHTS = {"label": 1.0, "score": 0.5}


def test_static_is_the_weighted_sum_of_the_objectives_present() -> None:
    weighting = StaticWeighting(StaticWeightingConfig(), WEIGHTS)
    assert float(weighting(LOSSES)) == 2.0 + 0.5 * 4.0
    assert float(weighting({"score": LOSSES["score"]})) == 2.0  # an objective without a loss this step is left out


def test_uncertainty_starts_at_half_the_static_weights_and_learns_with_the_model() -> None:
    weighting = UncertaintyWeighting(UncertaintyWeightingConfig(), WEIGHTS)
    assert float(weighting(LOSSES).detach()) == pytest.approx(0.5 * 2.0 + 0.5 * 0.5 * 4.0)  # s = 0
    model = model_fixtures.model("concat", ["text", "image"], training={"loss_weighting": "uncertainty"}).train()
    before = model.weighting.weights()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for step in range(20):
        batch = model_fixtures.make_batch(["text", "image"], seed=step)
        total, _ = model(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    after = model.weighting.weights()
    assert all(after[name] != pytest.approx(before[name], rel=1e-3) for name in before), (before, after)
    assert any(key.startswith("weighting.log_variance.") for key in model.state_dict())  # saved with the model


def test_dwa_weights_the_objective_whose_loss_fell_least() -> None:
    weighting = DwaWeighting(DwaWeightingConfig(temperature=2.0), WEIGHTS)
    assert weighting.weights() == WEIGHTS  # the first two epochs: weight 1 times the recipe's
    weighting.end_epoch({"label": 2.0, "score": 4.0})
    assert weighting.weights() == WEIGHTS
    weighting.end_epoch({"label": 1.0, "score": 3.0})  # label halved, score fell by a quarter
    ratios = torch.tensor([1.0 / 2.0, 3.0 / 4.0])
    expected = 2 * torch.softmax(ratios / 2.0, dim=0)
    assert weighting.weights()["label"] == pytest.approx(float(expected[0]) * 1.0)
    assert weighting.weights()["score"] == pytest.approx(float(expected[1]) * 0.5)
    assert weighting.weights()["score"] / 0.5 > weighting.weights()["label"]
    total = weighting(LOSSES)
    assert float(total) == pytest.approx(float(expected[0]) * 2.0 + float(expected[1]) * 0.5 * 4.0)
    restored = DwaWeighting(DwaWeightingConfig(temperature=2.0), WEIGHTS)
    restored.load_state_dict(weighting.state_dict())
    assert restored.weights() == weighting.weights()
    assert not math.isnan(float(restored.epoch_losses.sum()))
