"""model.corruption_gate (robust-fusion plug-in): a detector objective per input, trained on corrupted
copies; at inference a wrapper treats rows judged corrupted as missing."""

from __future__ import annotations

import torch

from mmcli.inference.predictor import infer_batch, run_inference
from mmcli.plugins.robust_fusion import corruption_gate
from mmcli.plugins.robust_fusion.corruption_gate import COPY_SUFFIX, NAME, ROWS_SUFFIX, add_corrupted_copies
from mmcli.training.callbacks.modality_dropout import drop_modalities
from tests.unit.model_fixtures import INPUTS, SPECS, make_batch, model, predictions

MODALITIES = list(INPUTS)
IMAGE = INPUTS["image"]
ALL_INPUTS = {INPUTS[m]: (m, SPECS[m]) for m in MODALITIES}


def model_with_gate(gate: bool = True, fusion: str = "gated", modalities: list[str] = MODALITIES):
    return model(fusion, modalities, model={"corruption_gate": {}} if gate else {})


def detector_of(built):
    return built.objectives[NAME]


def hidden(batch: dict, name: str, rows: torch.Tensor) -> dict:
    mask = batch[f"{name}_mask"].clone()
    mask[rows] = False
    return {**batch, f"{name}_mask": mask}


def test_off_adds_no_parameters_and_keeps_the_initialisation() -> None:
    plain, gated = model_with_gate(False), model_with_gate(True)
    assert not any(NAME in key for key in plain.state_dict()) and not plain.wrappers
    extra = {key.split(".")[3] for key in gated.state_dict() if key.startswith(f"objectives.{NAME}.")}
    assert extra == set(INPUTS.values()) and list(gated.wrappers) == [NAME]
    for key, value in plain.state_dict().items():  # the detectors are created last
        torch.testing.assert_close(gated.state_dict()[key], value)


def test_corrupted_copies_reach_the_detector_and_nothing_else() -> None:
    built = model_with_gate().train()
    batch = make_batch(MODALITIES)
    torch.manual_seed(3)
    with_copies = add_corrupted_copies(batch, ALL_INPUTS, rate=0.99, min_level=0.5)

    def run(inputs: dict):
        torch.manual_seed(0)  # the same dropout masks in both calls
        return predictions(built, inputs)

    plain, copied = run(batch), run(with_copies)
    for task in ("label", "score"):  # the task heads see exactly the clean batch
        torch.testing.assert_close(copied[task], plain[task])
    detector = detector_of(built)
    assert detector.loss(built.backbone(batch), batch) is None  # no copies, nothing for the detectors
    estimates, targets = detector.training_estimates(with_copies, built.backbone(with_copies).encoded)
    for name in INPUTS.values():
        originals = len(with_copies[name + ROWS_SUFFIX])
        copies = int(with_copies[name + COPY_SUFFIX + "_mask"].flatten(1).any(dim=1).sum())
        assert len(estimates[name]) == len(targets[name]) == originals + copies
        assert (targets[name][:, 0] >= 0).all()  # a loss, then a gain of either sign
    built.zero_grad()
    detector.loss(built.backbone(with_copies), with_copies).backward()
    assert all(p.grad is None for n, p in built.named_parameters() if not n.startswith(f"objectives.{NAME}."))
    assert all(p.grad is not None for p in detector.parameters())
    plain_model, copies_model = model_with_gate().train(), model_with_gate().train()
    for _ in range(3):
        plain_model(batch), copies_model(with_copies)
    running = [key for key in plain_model.state_dict() if "running_" in key]
    assert running  # BatchNorm statistics come from the clean rows only
    for key in running:
        torch.testing.assert_close(copies_model.state_dict()[key], plain_model.state_dict()[key])


def test_the_target_is_the_fused_models_own_verdict(monkeypatch) -> None:
    """Targets: the fused loss with the input, and the gain from dropping it (with minus without)."""
    built = model_with_gate()
    batch = make_batch(MODALITIES)
    torch.manual_seed(3)
    batch = add_corrupted_copies(batch, {IMAGE: ALL_INPUTS[IMAGE]}, rate=0.99, min_level=1.0)
    encoded = built.backbone.encode(batch)
    rows = len(batch[IMAGE + ROWS_SUFFIX])
    with_input = torch.linspace(0.2, 2.0, 2 * rows)

    def losses(_model, variant: dict, _batch: dict, index: torch.Tensor) -> torch.Tensor:
        assert len(index) == 4 * rows  # originals, then copies; with the input, then without
        return torch.where(variant[IMAGE].present, with_input.repeat(2), torch.full((4 * rows,), 1.0))

    monkeypatch.setattr(corruption_gate, "row_losses", losses)
    _, targets = detector_of(built).training_estimates(batch, encoded)
    torch.testing.assert_close(targets[IMAGE], torch.stack([with_input, with_input - 1.0], dim=-1))
    assert set(targets) == {IMAGE}  # no copies of the other inputs: nothing to learn for them


def test_training_loss_adds_the_detector_loss_and_validation_does_not() -> None:
    built = model_with_gate().train()
    torch.manual_seed(3)
    batch = add_corrupted_copies(make_batch(MODALITIES), ALL_INPUTS, rate=0.5, min_level=0.5)
    total, losses = built(batch)
    assert losses[NAME] > 0
    torch.testing.assert_close(total, losses["label"] + 0.5 * losses["score"] + losses[NAME])
    tensors = {**batch, "__row__": torch.arange(4)}
    assert set(run_inference(built, tensors, 4, torch.device("cpu")).losses) == {"label", "score"}


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
    built = model_with_gate().eval()
    batch = make_batch(MODALITIES)
    final = detector_of(built).detectors[IMAGE][-1]
    with torch.no_grad():
        final.weight.zero_()
        final.bias.copy_(torch.tensor([1.0, 10.0]))  # "dropping the image gains 10 on a loss of 1": always
        _, everywhere, reports = infer_batch(built, batch)
        _, nowhere_image, _ = infer_batch(built, hidden(batch, IMAGE, torch.ones(4, dtype=torch.bool)))
    torch.testing.assert_close(everywhere["label"], nowhere_image["label"])
    assert reports[NAME][IMAGE].tolist() == batch[f"{IMAGE}_mask"].any(dim=1).tolist()
    with torch.no_grad():
        for detector in detector_of(built).detectors.values():  # "nothing is corrupted": the ungated model
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, -10.0]))
        plain = model_with_gate(False)
        plain.load_state_dict({k: v for k, v in built.state_dict().items() if not k.startswith(f"objectives.{NAME}.")})
        torch.testing.assert_close(infer_batch(built, batch)[1]["label"], infer_batch(plain.eval(), batch)[1]["label"])


def test_the_detector_learns_to_tell_noise_from_signal() -> None:
    """A real training signal: a model trained a few hundred steps with modality dropout on structured
    images (predicting the square's size); its detector learns, on unseen images, that the model's loss
    is higher on corrupted images than on clean ones and that dropping a corrupted image costs less
    than dropping a clean one (as measured on the model itself; a gap it did not estimate before)."""
    model = model_with_gate(modalities=["image", "text"])
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
        detector, encoder = detector_of(model).detectors[IMAGE], model.encoders[IMAGE]
        clean_e, noisy_e = (detector(encoder(b[IMAGE], b[f"{IMAGE}_mask"]).pooled) for b in (clean, noisy))
        losses = [(infer_batch(model, b)[1]["score"] - b["score"]).square() for b in (clean, noisy, missing)]
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
        model(batch)[0].backward()
        optimizer.step()
    after = judged()
    assert after["loss_auc"] > 0.8, (before, after)
    assert after["true_gain_gap"] > 0.1, (before, after)  # the toy's premise: a corrupted image is worth less
    assert after["gain_gap"] > before["gain_gap"] + 0.1 * after["true_gain_gap"], (before, after)


def test_predictions_report_the_rows_treated_as_missing() -> None:
    built = model_with_gate()
    batch = make_batch(MODALITIES)
    with torch.no_grad():
        for name, detector in detector_of(built).detectors.items():
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, 10.0 if name == IMAGE else -10.0]))
    tensors = {**batch, "__row__": torch.arange(4)}
    result = run_inference(built, tensors, batch_size=3, device=torch.device("cpu"))
    present = batch[f"{IMAGE}_mask"].any(dim=1)
    flags = result.reports[NAME]
    assert flags[IMAGE].tolist() == present.tolist()
    assert not any(flags[name].any() for name in INPUTS.values() if name != IMAGE)
    gate = built.wrappers[NAME]
    assert gate.summarize(flags)[IMAGE] == int(present.sum())
    assert gate.row_fields(flags, int(present.nonzero()[0])) == {"treated_as_missing": [IMAGE]}
    assert not run_inference(model_with_gate(False), tensors, batch_size=3, device=torch.device("cpu")).reports


def test_row_losses_match_the_mean_losses_of_the_heads() -> None:
    built = model_with_gate().eval()
    batch = make_batch(MODALITIES)
    output = predictions(built, batch)
    for task, head in built.tasks.items():
        rows = head.row_loss(output[task], batch[task])
        labelled = batch[task] != -100 if task == "label" else ~torch.isnan(batch[task])
        assert (rows[~labelled] == 0).all()
        torch.testing.assert_close(rows[labelled].mean(), head.prediction_loss(output[task], batch[task]))
