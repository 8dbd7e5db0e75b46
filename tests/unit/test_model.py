"""The assembled model: shapes, weighted loss, gradients and a tiny overfit, for every registered fusion."""

from __future__ import annotations

import pytest
import torch

from mmcli.errors import RecipeError
from mmcli.inference.predictor import infer_batch
from mmcli.model import build_model
from mmcli.models.representation import Representation
from mmcli.registries import FUSIONS
from tests.unit.model_fixtures import B, D, INPUTS, SPECS, make_batch, model, preprocessing, recipe


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_forward_and_weighted_loss(fusion: str) -> None:
    built = model(fusion).eval()
    batch = make_batch()
    rep, predictions, _ = infer_batch(built, batch)
    assert isinstance(rep, Representation) and set(rep.encoded) == set(INPUTS.values())
    assert rep.fused.shape == (B, D)
    assert predictions["label"].shape == (B, 3) and predictions["score"].shape == (B,)
    total, losses = built(batch)
    assert set(losses) == {"label", "score"} and torch.isfinite(total)
    torch.testing.assert_close(total, losses["label"] + 0.5 * losses["score"])
    torch.testing.assert_close(losses["score"], built.tasks["score"].prediction_loss(predictions["score"], batch["score"]))


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_gradients_reach_every_parameter(fusion: str) -> None:
    built = model(fusion).train()
    batch = make_batch()
    built(batch)[0].backward()
    for name, p in built.named_parameters():
        assert p.grad is not None, name
        # fusions that exclude missing modalities never read the learned missing vectors
        if not name.endswith(".missing") or fusion == "concat":
            assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_tiny_model_overfits_tiny_batch(fusion: str) -> None:
    built = model(fusion, ["text", "image"]).train()
    batch = make_batch(["text", "image"])
    optimizer = torch.optim.Adam(built.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        total, _ = built(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]


def test_state_dict_round_trip_and_layout() -> None:
    a, b = model("concat").eval(), model("concat", seed=1).eval()
    assert {key.split(".")[0] for key in a.state_dict()} == {"backbone", "objectives"}
    b.load_state_dict(a.state_dict())
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(a.backbone(batch).fused, b.backbone(batch).fused)


def test_dotted_input_name_is_a_recipe_error() -> None:
    built = recipe("concat", ["text"])
    specs = preprocessing(built)
    built.inputs = {"a.b": built.inputs["review"]}  # past validation, which refuses it too
    specs["inputs"] = {"a.b": specs["inputs"]["review"]}
    with pytest.raises(RecipeError):
        build_model(built, specs)


def test_shared_space_projects_every_input() -> None:
    built = model("concat", model={"shared_space": {"size": 8}}).eval()
    rep = built.backbone(make_batch())
    assert set(rep.shared) == set(INPUTS.values()) and all(v.shape == (B, 8) for v in rep.shared.values())
    tied = model("concat", model={"shared_space": {"size": 8, "tied": True}})
    assert [k for k in tied.state_dict() if ".shared." in k] == ["backbone.shared.tied.weight", "backbone.shared.tied.bias"]


def test_a_name_a_plugin_uses_is_refused() -> None:
    built = recipe("concat", ["text"], tasks={"unimodal": {"type": "regression", "column": "score"}},
                   model={"unimodal_loss": 1.0})
    specs = {"inputs": {"review": {"modality": "text", "spec": SPECS["text"]}},
             "tasks": {"unimodal": {"type": "regression", "spec": {"mean": 0.0, "std": 1.0}}}}
    with pytest.raises(RecipeError, match="'unimodal' names a task or objective"):
        build_model(built, specs)
