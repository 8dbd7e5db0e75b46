"""model.corruption_gate: a detector per input; rows judged corrupted are treated as missing."""

from __future__ import annotations

import torch

from mmcli.models.corruption_gate import COPY_SUFFIX, ROWS_SUFFIX, add_corrupted_copies
from mmcli.models.multimodal import build_model
from mmcli.recipe.schema import CorruptionGateSettings
from mmcli.training.modality_dropout import drop_modalities
from tests.unit.test_multimodal import INPUTS, SPECS, make_batch, recipe_and_preprocessing

MODALITIES = list(INPUTS)
IMAGE = INPUTS["image"]
ALL_INPUTS = {INPUTS[m]: (m, SPECS[m]) for m in MODALITIES}


def model_with_gate(gate: bool = True, fusion: str = "gated", modalities: list[str] = MODALITIES):
    recipe, preprocessing = recipe_and_preprocessing(fusion, modalities)
    if gate:
        recipe.model.corruption_gate = CorruptionGateSettings()
    torch.manual_seed(0)
    return build_model(recipe, preprocessing), preprocessing


def hidden(batch: dict, name: str, rows: torch.Tensor) -> dict:
    mask = batch[f"{name}_mask"].clone()
    mask[rows] = False
    return {**batch, f"{name}_mask": mask}


def test_off_adds_no_parameters_and_keeps_the_initialisation() -> None:
    plain, _ = model_with_gate(False)
    gated, _ = model_with_gate(True)
    assert not any(key.startswith("corruption_gate.") for key in plain.state_dict())
    extra = {key.split(".")[2] for key in gated.state_dict() if key.startswith("corruption_gate.")}
    assert extra == set(INPUTS.values())
    for key, value in plain.state_dict().items():  # the detectors are created last
        torch.testing.assert_close(gated.state_dict()[key], value)


def test_corrupted_copies_reach_the_detector_and_nothing_else() -> None:
    model, _ = model_with_gate()
    model.train()
    batch = make_batch(MODALITIES)
    torch.manual_seed(3)
    with_copies = add_corrupted_copies(batch, ALL_INPUTS, rate=0.99, min_level=0.5)

    def run(inputs: dict):
        torch.manual_seed(0)  # the same dropout masks in both calls
        return model(inputs)

    plain, copied = run(batch), run(with_copies)
    for task in ("label", "score"):  # the task heads see exactly the clean batch
        torch.testing.assert_close(copied.predictions[task], plain.predictions[task])
    assert not plain.corruption_estimates  # no copies, nothing for the detectors
    for name in INPUTS.values():
        originals = len(with_copies[name + ROWS_SUFFIX])
        copies = int(with_copies[name + COPY_SUFFIX + "_mask"].flatten(1).any(dim=1).sum())
        assert len(copied.corruption_estimates[name]) == len(copied.corruption_targets[name]) == originals + copies
        assert (copied.corruption_targets[name][:, 0] >= 0).all()  # a loss, then a gain of either sign
    model.zero_grad()
    copied_again = model(with_copies)
    model.compute_loss(copied_again, with_copies)[1]["corruption"].backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not n.startswith("corruption_gate."))
    assert all(p.grad is not None for p in model.corruption_gate.parameters())
    plain_model, copies_model = model_with_gate()[0].train(), model_with_gate()[0].train()
    for _ in range(3):
        plain_model(batch), copies_model(with_copies)
    running = [key for key in plain_model.state_dict() if "running_" in key]
    assert running  # BatchNorm statistics come from the clean rows only
    for key in running:
        torch.testing.assert_close(copies_model.state_dict()[key], plain_model.state_dict()[key])


def test_the_target_is_the_fused_models_own_verdict() -> None:
    """Targets: the fused loss with the input, and the gain from dropping it (with minus without)."""
    model, _ = model_with_gate()
    gate = model.corruption_gate
    batch = make_batch(MODALITIES)
    torch.manual_seed(3)
    batch = add_corrupted_copies(batch, {IMAGE: ALL_INPUTS[IMAGE]}, rate=0.99, min_level=1.0)
    encoded = {name: encoder(batch[name], batch[f"{name}_mask"]) for name, encoder in model.encoders.items()}
    rows = len(batch[IMAGE + ROWS_SUFFIX])
    with_input = torch.linspace(0.2, 2.0, 2 * rows)

    def losses(variant: dict, _batch: dict, index: torch.Tensor) -> torch.Tensor:
        assert len(index) == 4 * rows  # originals, then copies; with the input, then without
        return torch.where(variant[IMAGE].present, with_input.repeat(2), torch.full((4 * rows,), 1.0))

    _, targets = gate.training_estimates(model.encoders, batch, encoded, losses)
    torch.testing.assert_close(targets[IMAGE], torch.stack([with_input, with_input - 1.0], dim=-1))
    assert set(targets) == {IMAGE}  # no copies of the other inputs: nothing to learn for them


def test_training_loss_adds_the_detector_loss_and_evaluation_does_not() -> None:
    model, _ = model_with_gate()
    model.train()
    torch.manual_seed(3)
    batch = add_corrupted_copies(make_batch(MODALITIES), ALL_INPUTS, rate=0.5, min_level=0.5)
    total, losses = model.compute_loss(model(batch), batch)
    assert losses["corruption"] > 0
    torch.testing.assert_close(total, losses["label"] + 0.5 * losses["score"] + losses["corruption"])
    model.eval()
    assert "corruption" not in model.compute_loss(model(batch), batch)[1]


def test_copies_are_drawn_from_present_rows_and_leave_the_batch_alone() -> None:
    batch = make_batch(MODALITIES)
    torch.manual_seed(3)
    out = add_corrupted_copies(batch, ALL_INPUTS, rate=0.99, min_level=1.0)
    for m, name in INPUTS.items():
        present = batch[f"{name}_mask"].flatten(1).any(dim=1)
        copies = out[name + COPY_SUFFIX]
        assert len(copies) == int(present.sum())
        torch.testing.assert_close(out[name], batch[name])
        if m in ("image", "video"):  # level 1: not the original rows
            assert not torch.equal(copies, batch[name][present])
        if m == "text":  # level 1 token dropout: nothing left, so no "present" copy teaches the detector
            assert not out[name + COPY_SUFFIX + "_mask"].any()


def test_at_inference_the_detector_decides() -> None:
    model, _ = model_with_gate()
    model.eval()
    batch = make_batch(MODALITIES)
    final = model.corruption_gate.detectors[IMAGE][-1]
    with torch.no_grad():
        final.weight.zero_()
        final.bias.copy_(torch.tensor([1.0, 10.0]))  # "dropping the image gains 10 on a loss of 1": always
    everywhere = model(batch)
    nowhere_image = model(hidden(batch, IMAGE, torch.ones(4, dtype=torch.bool)))
    torch.testing.assert_close(everywhere.predictions["label"], nowhere_image.predictions["label"])
    assert everywhere.gated[IMAGE].tolist() == everywhere.present[IMAGE].tolist()
    with torch.no_grad():
        for detector in model.corruption_gate.detectors.values():  # "nothing is corrupted": the ungated model
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, -10.0]))
    plain, _ = model_with_gate(False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("corruption_gate.")})
    torch.testing.assert_close(model(batch).predictions["label"], plain.eval()(batch).predictions["label"])


def test_the_detector_learns_to_tell_noise_from_signal() -> None:
    """A real training signal: a model trained a few hundred steps with modality dropout on structured
    images (predicting the square's size); its detector learns, on unseen images, that the model's loss
    is higher on corrupted images than on clean ones and that dropping a corrupted image costs less
    than dropping a clean one (as measured on the model itself; a gap it did not estimate before)."""
    model, _ = model_with_gate(modalities=["image", "text"])
    inputs = {IMAGE: ("image", SPECS["image"])}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def images(n: int, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        x = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
        sizes = torch.randint(2, 6, (n,), generator=g)
        for i, size in enumerate(sizes.tolist()):  # a bright square on a dark background
            r, c = torch.randint(0, 8 - size + 1, (2,), generator=g).tolist()
            x[i, :, r:r + size, c:c + size] = 230
        batch = make_batch(["image", "text"], seed=seed)
        return {**{k: v[:1].expand(n, *v.shape[1:]).clone() for k, v in batch.items() if k != "row_id"},
                IMAGE: x, f"{IMAGE}_mask": torch.ones(n, 1, dtype=torch.bool),
                "label": torch.full((n,), -100), "score": (sizes.float() - 3.0) / 2.0}  # standardised

    clean = images(64, 10_000)
    torch.manual_seed(1)
    noisy = {**clean, IMAGE: add_corrupted_copies(clean, inputs, rate=1.0 - 1e-9, min_level=1.0)[IMAGE + COPY_SUFFIX]}

    @torch.no_grad()
    def judged() -> dict[str, float]:
        model.eval()
        detector, encoder = model.corruption_gate.detectors[IMAGE], model.encoders[IMAGE]
        clean_e, noisy_e = (detector(encoder(b[IMAGE], b[f"{IMAGE}_mask"]).pooled) for b in (clean, noisy))
        losses = [(model(b).predictions["score"] - b["score"]).square() for b in (clean, noisy, missing)]
        return {"loss_auc": float((noisy_e[:, 0].unsqueeze(1) > clean_e[:, 0].unsqueeze(0)).float().mean()),
                "gain_gap": float(noisy_e[:, 1].mean() - clean_e[:, 1].mean()),
                "true_gain_gap": float((losses[1] - losses[2]).mean() - (losses[0] - losses[2]).mean())}

    missing = hidden(clean, IMAGE, torch.ones(64, dtype=torch.bool))
    before = judged()
    torch.manual_seed(0)
    model.train()
    for step in range(300):
        batch = drop_modalities(images(32, step), [IMAGE, INPUTS["text"]], 0.3)  # as the trainer does
        batch = add_corrupted_copies(batch, inputs, rate=0.5, min_level=1.0)
        optimizer.zero_grad()
        model.compute_loss(model(batch), batch)[0].backward()
        optimizer.step()
    after = judged()
    assert after["loss_auc"] > 0.8, (before, after)
    assert after["true_gain_gap"] > 0.1, (before, after)  # the toy's premise: a corrupted image is worth less
    assert after["gain_gap"] > before["gain_gap"] + 0.1 * after["true_gain_gap"], (before, after)


def test_predictions_report_the_rows_treated_as_missing() -> None:
    from mmcli.evaluation.predictions import predict_tensors

    model, _ = model_with_gate()
    batch = make_batch(MODALITIES)
    with torch.no_grad():
        for name, detector in model.corruption_gate.detectors.items():
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, 10.0 if name == IMAGE else -10.0]))
    tensors = {**batch, "__row__": torch.arange(4)}
    result = predict_tensors(model, tensors, batch_size=3, device=torch.device("cpu"))
    present = batch[f"{IMAGE}_mask"].any(dim=1)
    assert result["treated_as_missing"][IMAGE].tolist() == present.tolist()
    assert not any(result["treated_as_missing"][name].any() for name in INPUTS.values() if name != IMAGE)
    plain, _ = model_with_gate(False)
    assert "treated_as_missing" not in predict_tensors(plain, tensors, batch_size=3, device=torch.device("cpu"))


def test_row_losses_match_the_mean_losses_of_the_heads() -> None:
    model, _ = model_with_gate()
    model.eval()
    batch = make_batch(MODALITIES)
    output = model(batch)
    for task, head in model.tasks.items():
        rows = head.row_loss(output.predictions[task], batch[task])
        labelled = batch[task] != -100 if task == "label" else ~torch.isnan(batch[task])
        assert (rows[~labelled] == 0).all()
        torch.testing.assert_close(rows[labelled].mean(), head.loss(output.predictions[task], batch[task]))
