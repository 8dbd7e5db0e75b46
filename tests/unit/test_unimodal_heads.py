"""model.unimodal_loss: auxiliary per-input heads, trained on the rows where their input is present."""

from __future__ import annotations

import pytest
import torch

from mmcli.models.multimodal import build_model
from mmcli.models.unimodal_heads import UnimodalHeads
from tests.unit.test_multimodal import INPUTS, make_batch, recipe_and_preprocessing

MODALITIES = list(INPUTS)


def model_with(weight: float, fusion: str = "gated"):
    recipe, preprocessing = recipe_and_preprocessing(fusion, MODALITIES)
    recipe.model.unimodal_loss = weight
    torch.manual_seed(0)
    return build_model(recipe, preprocessing)


def test_off_by_default_adds_no_parameters_and_keeps_the_initialisation() -> None:
    recipe, preprocessing = recipe_and_preprocessing("gated", MODALITIES)  # no unimodal_loss attribute at all
    torch.manual_seed(0)
    plain = build_model(recipe, preprocessing)
    off, on = model_with(0.0), model_with(0.5)
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert not any(key.startswith("unimodal.") for key in off.state_dict())
    extra = {key for key in on.state_dict() if key.startswith("unimodal.")}
    assert {key.split(".")[2] for key in extra} == set(INPUTS.values())  # unimodal.heads.INPUT.TASK...
    for key, value in plain.state_dict().items():  # the aux heads are created last
        torch.testing.assert_close(on.state_dict()[key], value)


def test_training_loss_adds_the_weighted_unimodal_loss_and_evaluation_does_not() -> None:
    model, batch = model_with(0.5).train(), make_batch(MODALITIES)
    torch.manual_seed(1)
    output = model(batch)
    total, losses = model.compute_loss(output, batch)
    fused = losses["label"] + 0.5 * losses["score"]
    assert losses["unimodal"] > 0
    torch.testing.assert_close(total, fused + 0.5 * losses["unimodal"])
    model.eval()
    total, losses = model.compute_loss(model(batch), batch)
    assert "unimodal" not in losses
    torch.testing.assert_close(total, losses["label"] + 0.5 * losses["score"])


def test_rows_without_the_input_do_not_enter_its_unimodal_loss() -> None:
    model, batch = model_with(1.0).eval(), make_batch(MODALITIES)  # eval: no dropout noise in the heads
    output = model(batch)
    image = INPUTS["image"]
    only_image = UnimodalHeads({image: dict(model.unimodal.heads[image].items())})
    absent = ~output.encoded[image].present
    assert absent.any() and (~absent).any()
    changed = {**batch, "label": batch["label"].clone(), "score": batch["score"].clone()}
    changed["label"][absent], changed["score"][absent] = 2, 99.0  # other targets where the image is missing
    loss = only_image.loss(output.encoded, batch, model.weights)
    torch.testing.assert_close(only_image.loss(output.encoded, changed, model.weights), loss)
    changed["score"][~absent] = 99.0  # a control: targets of rows with the image do count
    assert only_image.loss(output.encoded, changed, model.weights) > loss + 1


@pytest.mark.parametrize("fusion", ["gated", "late"])
def test_unimodal_loss_alone_trains_every_encoder(fusion: str) -> None:
    model, batch = model_with(1.0, fusion).train(), make_batch(MODALITIES)
    output = model(batch)
    model.unimodal.loss(output.encoded, batch, model.weights).backward()
    for name, encoder in model.encoders.items():
        grads = [p.grad for n, p in encoder.named_parameters() if not n.endswith("missing")]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, name
    assert all(p.grad is None for p in model.tasks.parameters())  # the fused heads are not part of it
