"""model.unimodal_loss (robust-fusion plug-in): auxiliary per-input heads, an objective trained on the
rows where their input is present."""

from __future__ import annotations

import pytest
import torch

from mmcli.inference.predictor import run_inference
from mmcli.plugins.robust_fusion.unimodal import UnimodalObjective
from tests.unit.model_fixtures import INPUTS, make_batch, model, rows


def model_with(weight: float, fusion: str = "gated"):
    return model(fusion, model={"unimodal_loss": weight})


def test_off_by_default_adds_no_parameters_and_keeps_the_initialisation() -> None:
    plain, off, on = model("gated"), model_with(0.0), model_with(0.5)
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert not any(key.startswith("objectives.unimodal.") for key in off.state_dict())
    extra = {key for key in on.state_dict() if key.startswith("objectives.unimodal.")}
    assert {key.split(".")[3] for key in extra} == set(INPUTS.values())  # objectives.unimodal.heads.INPUT.TASK...
    for key, value in plain.state_dict().items():  # the aux heads are created last
        torch.testing.assert_close(on.state_dict()[key], value)


def test_training_loss_adds_the_weighted_unimodal_loss_and_validation_does_not() -> None:
    built, batch = model_with(0.5).train(), make_batch()
    total, losses = built(batch)
    assert losses["unimodal"] > 0
    torch.testing.assert_close(total, losses["label"] + 0.5 * losses["score"] + 0.5 * losses["unimodal"])
    tensors = rows(list(INPUTS), 1)
    inference = run_inference(built, tensors, 4, torch.device("cpu"))
    assert set(inference.losses) == {"label", "score"}
    assert inference.loss == pytest.approx(inference.losses["label"] + 0.5 * inference.losses["score"], rel=1e-6)


def test_rows_without_the_input_do_not_enter_its_unimodal_loss() -> None:
    built, batch = model_with(1.0).eval(), make_batch()  # eval: no dropout noise in the heads
    rep = built.backbone(batch)
    image = INPUTS["image"]
    only_image = UnimodalObjective(1.0, built.tasks, [image])
    only_image.heads[image].load_state_dict(built.objectives["unimodal"].heads[image].state_dict())
    only_image.eval()
    absent = ~rep.encoded[image].present
    assert absent.any() and (~absent).any()
    changed = {**batch, "label": batch["label"].clone(), "score": batch["score"].clone()}
    changed["label"][absent], changed["score"][absent] = 2, 99.0  # other targets where the image is missing
    loss = only_image.loss(rep, batch)
    torch.testing.assert_close(only_image.loss(rep, changed), loss)
    changed["score"][~absent] = 99.0  # a control: targets of rows with the image do count
    assert only_image.loss(rep, changed) > loss + 1


@pytest.mark.parametrize("fusion", ["gated", "late"])
def test_unimodal_loss_alone_trains_every_encoder(fusion: str) -> None:
    built, batch = model_with(1.0, fusion).train(), make_batch()
    built.objectives["unimodal"].loss(built.backbone(batch), batch).backward()
    for name, encoder in built.encoders.items():
        grads = [p.grad for n, p in encoder.named_parameters() if not n.endswith("missing")]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, name
    for task in built.tasks.values():  # the fused heads are not part of it
        assert all(p.grad is None for p in task.parameters())
