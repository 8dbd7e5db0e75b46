"""Adversarial modality invariance: the reversal multiplies the gradient by -lambda, lambda follows its
schedule, and with the reversal on the discriminator's held-out accuracy moves toward chance."""

from __future__ import annotations

import math

import pytest
import torch

from mmcli.inference.predictor import run_inference
from mmcli.objectives.adversarial import AdversarialConfig, ModalityAdversary, reverse_gradient
from mmcli.objectives.base import BuildContext
from tests.unit import model_fixtures


def test_the_reversal_is_the_identity_forward_and_minus_lambda_backward() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    weights = torch.randn(5, 3)
    y = reverse_gradient(x, 0.7)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    torch.testing.assert_close(x.grad, -0.7 * weights)


@pytest.mark.parametrize(("schedule", "progress", "expected"), [
    ("constant", 0.0, 2.0), ("linear", 0.15, 1.0), ("linear", 0.9, 2.0),
    ("dann", 0.0, 0.0), ("dann", 0.5, 2.0 * (2 / (1 + math.exp(-5)) - 1)),
])
def test_lambda_follows_its_schedule(schedule: str, progress: float, expected: float) -> None:
    config = AdversarialConfig(strength=2.0, schedule=schedule, warmup=0.3)
    adversary = ModalityAdversary(config, BuildContext(name="adv", hidden_size=4, inputs={"a": "text", "b": "image"}))
    adversary.set_progress(progress)
    assert adversary.current_strength() == pytest.approx(expected)


def held_out_accuracy(strength: float) -> float:
    """Train a small two-input model with only the adversarial objective (and its discriminator),
    then score the discriminator on rows it never saw."""
    settings = {"type": "adversarial", "strength": strength, "schedule": "constant", "hidden": 16}
    model = model_fixtures.model("concat", ["text", "image"], tasks={}, objectives={"adv": settings},
                                 model={"shared_space": {"size": 8}})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = model_fixtures.make_batch(["text", "image"], seed=step)
        total, _ = model(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    held_out = model_fixtures.rows(["text", "image"], 16, first_seed=10_000)  # rows training never saw
    inference = run_inference(model, held_out, 16, torch.device("cpu"))
    return model.objectives["adv"].evaluate(inference.outputs["adv"], held_out)["discriminator_accuracy"]


def test_with_the_reversal_the_discriminator_moves_toward_chance() -> None:
    torch.manual_seed(0)
    without = held_out_accuracy(0.0)  # the discriminator trains, the encoders do not fight it
    torch.manual_seed(0)
    with_reversal = held_out_accuracy(1.0)
    assert without > 0.9, without  # text and image embeddings are easy to tell apart
    print({"without_reversal": without, "with_reversal": with_reversal})
    assert abs(with_reversal - 0.5) < abs(without - 0.5) - 0.2, (without, with_reversal)
