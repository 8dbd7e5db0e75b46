"""The assembled model: shapes, weighted loss, gradients and a tiny overfit, for every registered fusion."""

from __future__ import annotations

from types import SimpleNamespace as NS

import pytest
import torch

from mmcli.errors import RecipeError
from mmcli.models.multimodal import ModelOutput, build_model
from mmcli.registries import DEFAULT_ENCODER, ENCODERS, FUSIONS, TASKS

B, D = 4, 16
SPECS = {
    "text": {"vocab_size": 20, "max_length": 6, "pad_id": 0},
    "image": {"channels": 3, "size": 8, "mean": [0.5] * 3, "std": [0.25] * 3},
    "audio": {"n_features": 4, "frames": 8, "mean": 0.0, "std": 1.0},
    "video": {"channels": 1, "size": 8, "num_frames": 2, "mean": [0.5], "std": [0.25]},
}
SMALL = {"text": {"layers": 1}, "image": {"channels": [4, 8]}, "audio": {"channels": [8]},
         "video": {"channels": [4]}}  # tiny settings: the machine is shared
INPUTS = {"text": "review", "image": "photo", "audio": "clip", "video": "movie"}


def config(registry, name: str, **settings: object):
    return dict(zip(registry.names(), registry.configs()))[name](**settings)


def recipe_and_preprocessing(fusion: str, modalities: list[str]) -> tuple[NS, dict]:
    inputs = {INPUTS[m]: NS(modality=m, encoder=config(ENCODERS[m], DEFAULT_ENCODER[m], **SMALL[m]))
              for m in modalities}
    tasks = {"label": config(TASKS, "classification", column="label"),
             "score": config(TASKS, "regression", column="score", weight=0.5)}
    recipe = NS(inputs=inputs, tasks=tasks, model=NS(hidden_size=D, dropout=0.1, fusion=config(FUSIONS, fusion)))
    preprocessing = {
        "inputs": {INPUTS[m]: {"modality": m, "spec": SPECS[m]} for m in modalities},
        "tasks": {"label": {"type": "classification", "spec": {"classes": ["a", "b", "c"]}},
                  "score": {"type": "regression", "spec": {"mean": 3.0, "std": 2.0}}},
    }
    return recipe, preprocessing


def make_batch(modalities: list[str], seed: int = 0) -> dict[str, torch.Tensor]:
    """A loader-format batch: row r lacks the modality at position r (if any), so every encoder sees a missing row."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"text": (6,), "image": (3, 8, 8), "audio": (4, 8), "video": (2, 1, 8, 8)}
    batch: dict[str, torch.Tensor] = {"row_id": torch.arange(B)}  # extra keys must be ignored
    for i, m in enumerate(modalities):
        name, shape = INPUTS[m], shapes[m]
        if m == "text":
            x = torch.randint(1, 20, (B, *shape), generator=g)
        elif m == "audio":
            x = torch.randn(B, *shape, generator=g).half()
        else:
            x = torch.randint(0, 256, (B, *shape), generator=g, dtype=torch.uint8)
        mask = torch.ones(B, {"image": 1, "video": 2}.get(m, shape[-1]), dtype=torch.bool)
        if m in ("text", "audio"):
            mask[:2, -2:] = False  # some padding
        mask[i % B] = False
        x[~mask.any(dim=1)] = 0
        batch[name], batch[f"{name}_mask"] = x, mask
    batch["label"] = torch.tensor([0, 1, 2, -100])
    batch["score"] = torch.tensor([0.5, float("nan"), -1.0, 1.5])
    return batch


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_forward_and_weighted_loss(fusion: str) -> None:
    modalities = list(INPUTS)
    model = build_model(*recipe_and_preprocessing(fusion, modalities))
    out = model(make_batch(modalities))
    assert isinstance(out, ModelOutput) and set(out.encoded) == set(INPUTS.values())
    assert out.fused.shape == (B, D)
    assert out.predictions["label"].shape == (B, 3) and out.predictions["score"].shape == (B,)
    total, losses = model.compute_loss(out, make_batch(modalities))
    assert set(losses) == {"label", "score"} and torch.isfinite(total)
    torch.testing.assert_close(total, losses["label"] + 0.5 * losses["score"])


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_gradients_reach_every_parameter(fusion: str) -> None:
    modalities = list(INPUTS)
    model = build_model(*recipe_and_preprocessing(fusion, modalities)).train()
    batch = make_batch(modalities)
    model.compute_loss(model(batch), batch)[0].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        # fusions that exclude missing modalities never read the learned missing vectors
        if not name.endswith(".missing") or fusion == "concat":
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_tiny_model_overfits_tiny_batch(fusion: str) -> None:
    modalities = ["text", "image"]
    torch.manual_seed(0)
    model = build_model(*recipe_and_preprocessing(fusion, modalities)).train()
    batch = make_batch(modalities)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        total, _ = model.compute_loss(model(batch), batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_state_dict_round_trip() -> None:
    modalities = list(INPUTS)
    parts = recipe_and_preprocessing("concat", modalities)
    a, b = build_model(*parts).eval(), build_model(*parts).eval()
    b.load_state_dict(a.state_dict())
    batch = make_batch(modalities)
    with torch.no_grad():
        torch.testing.assert_close(a(batch).fused, b(batch).fused)


def test_dotted_input_name_is_a_recipe_error() -> None:
    recipe, preprocessing = recipe_and_preprocessing("concat", ["text"])
    recipe.inputs = {"a.b": recipe.inputs["review"]}
    preprocessing["inputs"] = {"a.b": preprocessing["inputs"]["review"]}
    with pytest.raises(RecipeError):
        build_model(recipe, preprocessing)
