"""Every pretraining objective: a finite loss with gradients into the encoders it trains, a validation
loss that does not depend on the RNG's state, and a few steps that lower it on a fixed batch."""

from __future__ import annotations

import pytest
import torch

from mmcli.inference.predictor import run_inference
from tests.unit import model_fixtures

OBJECTIVES = {
    "contrastive": ({"type": "contrastive", "inputs": ["photo", "review"]}, ["photo", "review"]),
    "contrastive-fused": ({"type": "contrastive", "inputs": ["clip", "fused"]}, ["clip"]),
    "adversarial": ({"type": "adversarial"}, ["photo", "review", "clip", "movie"]),
    "matching": ({"type": "matching", "inputs": ["photo", "review"]}, ["photo", "review"]),
    "masked_text": ({"type": "masked_text", "input": "review", "mask_ratio": 0.5}, ["review", "photo"]),
    "masked_image": ({"type": "masked_features", "input": "photo"}, ["photo"]),
    "masked_audio": ({"type": "masked_features", "input": "clip"}, ["clip"]),
    "masked_video": ({"type": "masked_features", "input": "movie"}, ["movie"]),
}


def model_with(settings: dict):
    return model_fixtures.model("gated", tasks={}, objectives={"pre": settings},
                                model={"shared_space": {"size": 8}, "attention": {"type": "mult", "heads": 2}})


@pytest.mark.parametrize("name", OBJECTIVES)
def test_loss_gradients_and_learning(name: str) -> None:
    settings, trained = OBJECTIVES[name]
    model = model_with(settings).train()
    batch = model_fixtures.make_batch()
    torch.manual_seed(0)
    total, losses = model(batch)
    assert set(losses) == {"pre"} and torch.isfinite(total)
    total.backward()
    for input_name in trained:
        grads = [p.grad for n, p in model.encoders[input_name].named_parameters() if not n.endswith("missing")]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), input_name
    tensors = model_fixtures.rows(list(model_fixtures.INPUTS), 2)
    first = run_inference(model, tensors, 4, torch.device("cpu")).losses["pre"]
    state = torch.get_rng_state()
    again = run_inference(model, tensors, 4, torch.device("cpu")).losses["pre"]
    assert first == again and torch.equal(state, torch.get_rng_state())  # fixed masks, the RNG left alone
    def training_loss() -> float:
        """The loss as training sees it (batch statistics, dropout, hard negatives), with fixed draws: on four
        rows, evaluation-mode statistics say more about BatchNorm's running averages than about learning."""
        with torch.no_grad():
            torch.manual_seed(1234)
            return float(model(batch)[0])

    model.train()
    before = training_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(25):
        torch.manual_seed(step)
        total, _ = model(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert training_loss() < before, name


def test_matching_negatives_are_never_of_the_same_group() -> None:
    model = model_with({"type": "matching", "inputs": ["photo", "review"], "group_column": "g"}).train()
    objective = model.objectives["pre"]
    batch = {**model_fixtures.make_batch(), "pre_group": torch.tensor([5, 5, 7, 7])}
    rep = model.backbone(batch)
    both = rep.encoded["photo"].present & rep.encoded["review"].present
    groups = objective._groups(batch, 4, torch.device("cpu"))
    for seed in range(20):
        torch.manual_seed(seed)
        second, first = objective._negatives(rep, torch.ones(4, dtype=torch.bool), groups, hard=True)
        assert (groups[second] != groups).all() and (groups[first] != groups).all()
    assert both.sum() >= 2


def test_masked_features_refuses_an_image_encoder_without_a_grid() -> None:
    from mmcli.errors import RecipeError

    model = model_with({"type": "masked_features", "input": "photo"})
    objective = model.objectives["pre"]
    with pytest.raises(RecipeError, match="not a square grid"):
        objective._targets(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), tokens=5)


def test_objectives_name_inputs_of_the_recipe() -> None:
    from mmcli.errors import RecipeError

    for settings, message in (({"type": "masked_text", "input": "photo"}, "holds image; the objective reads text only"),
                              ({"type": "masked_features", "input": "review"}, "holds text; the objective reads image, audio or video only"),
                              ({"type": "matching", "inputs": ["photo", "nope"]}, "unknown input 'nope'")):
        with pytest.raises(RecipeError, match=message):
            model_fixtures.recipe("gated", tasks={}, objectives={"pre": settings})
