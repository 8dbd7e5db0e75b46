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


def test_two_inputs_of_one_kind_can_share_an_encoder(tmp_path) -> None:
    from mmcli.recipe.loader import validate_recipe
    from mmcli.training.checkpoints import load_weights, save_checkpoint

    image = {"modality": "image", "column": "a", "encoder": {"type": "cnn", "channels": [4]}}
    data = {"name": "t", "data": {"manifest": "m.csv"}, "tasks": {"label": {"type": "classification", "column": "label"}},
            "model": {"hidden_size": D}, "inputs": {"front": image, "back": {**image, "column": "b", "share_encoder": "front"}}}
    built = validate_recipe(data)
    specs = {"inputs": {name: {"modality": "image", "spec": SPECS["image"]} for name in ("front", "back")},
             "tasks": {"label": {"type": "classification", "spec": {"classes": ["a", "b", "c"]}}}}
    model = build_model(built, specs)
    assert model.encoders["front"] is model.encoders["back"]
    alone = build_model(validate_recipe({**data, "inputs": {"front": image, "back": {**image, "column": "b"}}}), specs)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(alone) - count(model) == sum(p.numel() for p in alone.encoders["back"].parameters())
    save_checkpoint(tmp_path, model, {})  # the shared tensors stored under both names
    again = build_model(built, specs)
    load_weights(tmp_path, again)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)
    for bad, message in (({"share_encoder": "nope"}, "is not another input"),
                         ({"share_encoder": "back"}, "is not another input")):
        with pytest.raises(RecipeError, match=message):
            validate_recipe({**data, "inputs": {"front": image, "back": {**image, "column": "b", **bad}}})
    text = {"modality": "text", "column": "t"}
    with pytest.raises(RecipeError, match="one vocabulary"):
        validate_recipe({**data, "inputs": {"front": image, "t1": text, "t2": {**text, "share_encoder": "t1"}}})
    other_size = {**specs, "inputs": {**specs["inputs"], "back": {"modality": "image", "spec": {**SPECS["image"], "size": 16}}}}
    with pytest.raises(RecipeError, match="different shapes"):
        build_model(built, other_size)
