"""model.missing_fallback (robust-fusion plug-in): with an input missing, a task answers from its prior
or a single-input head where that was measured to beat the fused model."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mmcli.inference.predictor import infer_batch, run_inference
from mmcli.plugins.robust_fusion.calibration import calibrate_missing_fallback
from mmcli.plugins.robust_fusion.missing_fallback import MODEL, NAME, PRIOR
from tests.unit import model_fixtures
from tests.unit.model_fixtures import INPUTS, make_batch, predictions

MODALITIES = ["text", "image"]
IMAGE, TEXT = INPUTS["image"], INPUTS["text"]


def model_with_fallback(fallback: bool = True, unimodal: float = 0.0, **model: object):
    settings = {"unimodal_loss": unimodal, **({"missing_fallback": {}} if fallback else {}), **model}
    return model_fixtures.model("gated", MODALITIES, model=settings)


def rows(n_batches: int = 8) -> dict[str, torch.Tensor]:
    return model_fixtures.rows(MODALITIES, n_batches)


def missing(batch: dict, name: str) -> torch.Tensor:
    return ~batch[f"{name}_mask"].any(dim=1)


def answer(model, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(predictions, answered_by codes per task) at inference."""
    with torch.no_grad():
        _, predicted, reports = infer_batch(model.eval(), batch)
    return predicted, reports.get(NAME, {})


def head(model, name: str, task: str, batch: dict) -> torch.Tensor:
    """Input ``name``'s own head's prediction for ``task``."""
    with torch.no_grad():
        vector = model.encoders[name](batch[name], batch[f"{name}_mask"]).pooled
        return model.objectives["unimodal"].predict(name, task, vector)


def test_off_adds_nothing_and_keeps_the_initialisation() -> None:
    plain, with_fallback = model_with_fallback(False), model_with_fallback(True)
    assert not any(key.startswith("wrappers.") for key in plain.state_dict())
    assert not any(key.startswith("wrappers.") for key, _ in with_fallback.named_parameters())  # buffers only
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(with_fallback.state_dict()[key], value)
    batch = make_batch(MODALITIES)
    out, answered = answer(with_fallback, batch)  # nothing calibrated: every task answers from the model
    torch.testing.assert_close(out["score"], answer(plain, batch)[0]["score"])
    assert answered and all((codes == MODEL).all() for codes in answered.values())


def test_priors_are_the_loss_minimising_constants() -> None:
    """Regression: the labels' mean (lowest squared error); classification: class frequencies (lowest
    cross-entropy), add-one smoothed so that a class unseen in training keeps some probability."""
    model = model_with_fallback()
    labels = torch.tensor([0, 0, 0, 1, -100, 2, 0])
    logits = model.tasks["label"].prior(labels)
    torch.testing.assert_close(logits.exp(), torch.tensor([5.0, 2.0, 2.0]) / 9)  # add-one smoothed frequencies
    scores = torch.tensor([1.0, float("nan"), 3.0, 2.0])
    assert float(model.tasks["score"].prior(scores)) == 2.0
    many = torch.cat([torch.zeros(600), torch.ones(300), torch.full((100,), 2)]).long()
    best = F.cross_entropy(model.tasks["label"].prior(many).expand(len(many), 3), many)
    for shift in (torch.tensor([0.05, 0.0, 0.0]), torch.tensor([-0.05, 0.05, 0.0])):
        assert best < F.cross_entropy((model.tasks["label"].prior(many) + shift).expand(len(many), 3), many)


def test_rows_missing_the_input_answer_the_prior_and_are_reported() -> None:
    model = model_with_fallback()
    model.wrappers[NAME].set({"score": torch.tensor(7.0), "label": torch.tensor([0.0, -1.0, -2.0])},
                             {(IMAGE, "score"): "prior"})
    batch = make_batch(MODALITIES)
    no_image = missing(batch, IMAGE)
    assert no_image.any() and not no_image.all()
    out, answered = answer(model, batch)
    plain = model_with_fallback(False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("wrappers.")})
    reference, _ = answer(plain, batch)
    assert answered["score"].tolist() == [PRIOR if row else MODEL for row in no_image.tolist()]
    assert (answered["label"] == MODEL).all()
    assert (out["score"][no_image] == 7.0).all()
    torch.testing.assert_close(out["score"][~no_image], reference["score"][~no_image])
    torch.testing.assert_close(out["label"], reference["label"])
    model.train()  # training never sees the fallback: the heads learn from every row
    assert not (predictions(model, batch)["score"][no_image] == 7.0).any()


def test_a_single_input_head_answers_and_the_prior_wins_when_both_are_named() -> None:
    model = model_with_fallback(unimodal=1.0).eval()
    fallback = model.wrappers[NAME]
    fallback.set({"score": torch.tensor(7.0)}, {(IMAGE, "label"): TEXT, (IMAGE, "score"): TEXT,
                                                (TEXT, "score"): "prior"})
    batch = rows(2)
    batch[f"{IMAGE}_mask"][0] = False  # row 0 has no text either
    no_image, no_text = missing(batch, IMAGE), missing(batch, TEXT)
    assert (no_image & ~no_text).any() and (no_image & no_text).any()
    out, answered = answer(model, batch)
    by_text = no_image & ~no_text
    for task in ("label", "score"):
        torch.testing.assert_close(out[task][by_text], head(model, TEXT, task, batch)[by_text])
        assert (answered[task][by_text] == fallback.input_names.index(TEXT)).all()
    # the text head cannot answer without text: label falls back to the model, score to its prior
    assert (answered["label"][no_image & no_text] == MODEL).all()
    assert (answered["score"][no_text] == PRIOR).all() and (out["score"][no_text] == 7.0).all()


def test_calibration_picks_the_source_that_beats_the_others_on_validation() -> None:
    """Validation targets are built so that, with the image missing, ``score`` is exactly what the text's
    own head predicts (the fused model beats a far-off prior, the text head beats the fused model) and
    ``label`` is always the training majority class (the prior beats the untrained model)."""
    model = model_with_fallback(unimodal=1.0).eval()
    validation = rows()
    no_image = {**validation, f"{IMAGE}_mask": torch.zeros_like(validation[f"{IMAGE}_mask"])}
    validation["score"] = head(model, TEXT, "score", no_image)
    validation["label"] = torch.zeros_like(validation["label"])
    train_rows = rows()
    train_rows["label"] = torch.zeros_like(train_rows["label"])
    train_rows["score"] = torch.full_like(train_rows["score"], 50.0)  # a prior far from every target
    report = calibrate_missing_fallback(model, train_rows, validation, batch_size=5, device=torch.device("cpu"))
    decided = report["inputs"][IMAGE]
    assert decided["score"]["answers"] == TEXT, decided["score"]
    assert decided["score"]["model_vs_prior_lower_bound"] > 0 and decided["score"]["replacements"][TEXT]["loss"] < 1e-10
    assert decided["label"]["answers"] == "prior" and decided["label"]["model_vs_prior_lower_bound"] < 0
    assert decided["score"]["rows"] == len(validation["__row__"])
    fallback = model.wrappers[NAME]
    image = fallback.input_names.index(IMAGE)
    assert int(fallback.source[image, fallback.task_names.index("label")]) == PRIOR
    assert int(fallback.source[image, fallback.task_names.index("score")]) == fallback.input_names.index(TEXT)
    assert float(fallback.prior("score")) == 50.0
    batch = make_batch(MODALITIES)
    out, answered = answer(model, batch)  # the decisions act on the rows missing the image
    no_image_rows = missing(batch, IMAGE)
    assert (answered["label"][no_image_rows] == PRIOR).all()
    assert math.isclose(float(out["label"][no_image_rows][0].softmax(-1)[0]),
                        float(fallback.prior("label").softmax(-1)[0]), rel_tol=1e-6)


def test_average_of_two_predictions_per_task_type() -> None:
    """Regression: the mean of the values; classification: logits whose probabilities are the mean of the
    members' probabilities (so its cross-entropy is at most the members' mean, on every row)."""
    model = model_with_fallback()
    a, b = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    torch.testing.assert_close(model.tasks["score"].average([a, b]), torch.tensor([2.0, -1.0]))
    x, y = torch.randn(6, 3), torch.randn(6, 3) * 3
    blended = model.tasks["label"].average([x, y])
    torch.testing.assert_close(blended.softmax(-1), (x.softmax(-1) + y.softmax(-1)) / 2)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    head = model.tasks["label"]
    assert (head.row_loss(blended, target) <= (head.row_loss(x, target) + head.row_loss(y, target)) / 2 + 1e-6).all()


def test_the_average_of_the_fused_model_and_a_head_answers_and_is_picked_without_a_test() -> None:
    """With the image missing, ``score``'s validation targets are the mean of the fused model's and the
    text head's predictions: the average has zero loss, the head alone is not better than the model
    (it is as far on the other side), so the average answers, and rows without the image get it."""
    model = model_with_fallback(unimodal=1.0).eval()
    validation = rows()
    no_image = {**validation, f"{IMAGE}_mask": torch.zeros_like(validation[f"{IMAGE}_mask"])}
    fused, single = answer(model, no_image)[0]["score"], head(model, TEXT, "score", no_image)
    assert (fused - single).abs().mean() > 0.01  # two different answers
    validation["score"] = (fused + single) / 2
    report = calibrate_missing_fallback(model, rows(), validation, batch_size=5, device=torch.device("cpu"))
    decided = report["inputs"][IMAGE]["score"]
    assert decided["answers"] == f"model+{TEXT}", decided
    assert decided["replacements"][f"model+{TEXT}"]["loss"] < 1e-10
    assert decided["replacements"][TEXT]["vs_model_lower_bound"] <= 0  # as far on the other side: no better
    fallback = model.wrappers[NAME]
    code = int(fallback.source[fallback.input_names.index(IMAGE), fallback.task_names.index("score")])
    assert fallback.source_name(code) == f"model+{TEXT}" and fallback.head_input(code) == TEXT
    batch = make_batch(MODALITIES)
    by_blend = missing(batch, IMAGE) & ~missing(batch, TEXT)
    assert by_blend.any()
    out, answered = answer(model, batch)
    fallback.source.fill_(MODEL)
    plain = answer(model, batch)[0]["score"]
    single = head(model, TEXT, "score", batch)
    torch.testing.assert_close(out["score"][by_blend], ((plain + single) / 2)[by_blend])
    complete = ~missing(batch, IMAGE) & ~missing(batch, TEXT)  # (rows without the text follow its decisions)
    assert complete.any()
    torch.testing.assert_close(out["score"][complete], plain[complete])
    assert (answered["score"][by_blend] == code).all()


def test_complete_rows_answer_from_their_own_decision() -> None:
    """Validation targets are the average of the fused model and the text head on every row, so with
    every input present that average is picked; rows missing an input keep their own decisions, and the
    robustness share counts rows answered otherwise than complete rows are."""
    model = model_with_fallback(unimodal=1.0).eval()
    validation = rows()
    fused, single = answer(model, validation)[0]["score"], head(model, TEXT, "score", validation)
    validation["score"] = (fused + single) / 2
    complete = ~missing(validation, IMAGE) & ~missing(validation, TEXT)
    assert 1 < int(complete.sum()) < len(complete)
    report = calibrate_missing_fallback(model, rows(), validation, batch_size=5, device=torch.device("cpu"))
    assert report["complete"]["score"]["answers"] == f"model+{TEXT}", report["complete"]["score"]
    assert report["complete"]["score"]["rows"] == int(complete.sum())  # only rows with every input present
    fallback = model.wrappers[NAME]
    blend = fallback.input_names.index(TEXT) + len(fallback.input_names)
    assert int(fallback.when_complete[fallback.task_names.index("score")]) == blend
    out, answered = answer(model, validation)
    torch.testing.assert_close(out["score"][complete], validation["score"][complete])
    assert (answered["score"][complete] == blend).all()
    only_image_missing = missing(validation, IMAGE) & ~missing(validation, TEXT)
    assert only_image_missing.any()  # they follow the image's decision, not the complete rows'
    image_decision = int(fallback.source[fallback.input_names.index(IMAGE), fallback.task_names.index("score")])
    assert (answered["score"][only_image_missing] == image_decision).all()
    unusual = fallback.unusual_rows(answered)["score"]
    assert not unusual[complete].any()


def test_complete_rows_off_and_checkpoints_from_before_it() -> None:
    model = model_with_fallback(unimodal=1.0, missing_fallback={"complete_rows": False}).eval()
    report = calibrate_missing_fallback(model, rows(), rows(), batch_size=5, device=torch.device("cpu"))
    assert "complete" not in report and (model.wrappers[NAME].when_complete == MODEL).all()
    older = {k: v for k, v in model.state_dict().items() if k != f"wrappers.{NAME}.when_complete"}
    fresh = model_with_fallback(unimodal=1.0)
    fresh.wrappers[NAME].when_complete.fill_(0)
    fresh.load_state_dict(older, strict=True)  # a checkpoint saved before complete-row decisions existed
    assert (fresh.wrappers[NAME].when_complete == MODEL).all()


def test_predictions_and_metrics_report_what_answered() -> None:
    model = model_with_fallback()
    fallback = model.wrappers[NAME]
    fallback.set({}, {(TEXT, "label"): "prior"})
    tensors = rows(2)
    no_text = missing(tensors, TEXT)
    result = run_inference(model, tensors, batch_size=3, device=torch.device("cpu"))
    answered = result.reports[NAME]
    assert (answered["label"] == PRIOR).tolist() == no_text.tolist()
    assert (answered["score"] == MODEL).all()
    assert fallback.summarize(answered) == {"label": {"prior": int(no_text.sum())}, "score": {}}
    row = int(no_text.nonzero()[0])
    assert fallback.row_fields(answered, row) == {"answered_by": {"label": "prior"}}
    assert not run_inference(model_with_fallback(False), tensors, 3, torch.device("cpu")).reports


def test_robustness_report_lists_gate_drops_and_prior_answers_per_level() -> None:
    from mmcli.cli.render import robustness_table
    from mmcli.evaluation.robustness import LEVELS, robustness_report

    built = model_fixtures.recipe("gated", MODALITIES, model={"missing_fallback": {}, "corruption_gate": {}})
    preprocessing = model_fixtures.preprocessing(built)
    model = model_with_fallback(corruption_gate={})
    with torch.no_grad():  # the gate drops every image and no text; a row without the image answers score's prior
        for name, detector in model.objectives["corruption_gate"].detectors.items():
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, 10.0 if name == IMAGE else -10.0]))
    model.wrappers[NAME].set({}, {(IMAGE, "score"): "prior"})
    tensors = rows(2)
    present = float(tensors[f"{IMAGE}_mask"].any(dim=1).float().mean())
    assert 0 < present < 1
    report = robustness_report(model, built, preprocessing, tensors, batch_size=3)
    image, text = report["inputs"][IMAGE], report["inputs"][TEXT]
    assert image["treated_as_missing"]["noise"][IMAGE] == [round(present, 4)] * len(LEVELS)
    assert text["treated_as_missing"]["noise"][TEXT] == [0.0] * len(LEVELS)
    assert image["answered_by"]["missing"] == {"label": 0.0, "score": 1.0}
    assert image["answered_by"]["noise"]["score"] == [1.0] * len(LEVELS)  # dropped by the gate = missing
    assert text["answered_by"]["noise"]["score"] == [1.0] * len(LEVELS)
    headers = [c.header for c in robustness_table(report).columns]
    assert headers[-4:] == ["treated_as_missing @1.0", "treated_as_missing if missing", "answered_by @1.0",
                            "answered_by if missing"]


def test_late_fusion_with_single_input_heads_calibrates_and_answers() -> None:
    """Late fusion's tasks are ordinary objectives with a head per input, so averaging a fused answer
    with a single-input head works as for any fusion (mmcli 0.1 failed here: no ``average``)."""
    model = model_fixtures.model("late", MODALITIES, model={"unimodal_loss": 1.0, "missing_fallback": {}}).eval()
    report = calibrate_missing_fallback(model, rows(), rows(), batch_size=5, device=torch.device("cpu"))
    assert set(report["inputs"]) == {TEXT, IMAGE} and set(report["complete"]) == {"label", "score"}
    assert all({TEXT, IMAGE, f"model+{TEXT}"} <= set(entry["replacements"]) for entry in report["complete"].values())
    result = run_inference(model, rows(2), batch_size=3, device=torch.device("cpu"))
    assert set(result.reports[NAME]) == {"label", "score"} and result.predictions["label"].shape == (8, 3)
