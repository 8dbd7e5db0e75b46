"""Seeded initialisation is per component: a part's initial weights depend on the run's seed and its
name, never on which other parts the model has or in what order they are made."""

from __future__ import annotations

import torch

from mmcli.model import build_model
from mmcli.recipe.loader import validate_recipe

SPEC = {"inputs": {
    "image": {"modality": "image", "spec": {"channels": 3, "size": 16, "mean": [0.5] * 3, "std": [0.25] * 3}},
    "audio": {"modality": "audio", "spec": {"n_features": 16, "frames": 20, "mean": 0.0, "std": 1.0}},
}, "tasks": {"a": {"type": "classification", "spec": {"classes": ["x", "y"]}},
             "b": {"type": "regression", "spec": {"mean": 0.0, "std": 1.0}}}}


def recipe(inputs: list[str], tasks: list[str], seed: int = 0):
    all_inputs = {"image": {"modality": "image", "column": "image", "encoder": {"type": "cnn", "channels": [8]}},
                  "audio": {"modality": "audio", "column": "audio", "encoder": {"type": "cnn", "channels": [8]}}}
    all_tasks = {"a": {"type": "classification", "column": "a"}, "b": {"type": "regression", "column": "b"}}
    return validate_recipe({"name": "x", "seed": seed, "data": {"manifest": "m.csv"},
                            "inputs": {name: all_inputs[name] for name in inputs},
                            "tasks": {name: all_tasks[name] for name in tasks}, "model": {"hidden_size": 8}})


def weights(model: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_part_keeps_its_weights_whatever_else_the_model_has() -> None:
    torch.manual_seed(99)  # the global state must not matter either
    full = build_model(recipe(["image", "audio"], ["a", "b"]), SPEC)
    torch.manual_seed(5)
    fewer = build_model(recipe(["audio", "image"], ["b"]), SPEC)  # other order, a task less
    for prefix in ("backbone.encoders.image.", "backbone.encoders.audio.", "objectives.b."):
        assert same(weights(full, prefix), weights(fewer, prefix)), prefix


def test_another_seed_gives_other_weights_and_building_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = build_model(recipe(["image"], ["a"], seed=0), SPEC)
    assert torch.equal(torch.get_rng_state(), before)
    other = build_model(recipe(["image"], ["a"], seed=1), SPEC)
    assert not same(weights(first, "backbone.encoders.image."), weights(other, "backbone.encoders.image."))
    assert not torch.equal(first.state_dict()["objectives.a.head.1.weight"], other.state_dict()["objectives.a.head.1.weight"])
