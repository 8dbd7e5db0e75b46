"""model.missing_fallback: with an input missing, a task answers from its prior or a single-input head
where that was measured to beat the fused model."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mmcli.models.missing_fallback import MODEL, PRIOR
from mmcli.models.multimodal import build_model
from mmcli.recipe.schema import MissingFallbackSettings
from mmcli.training.fallback_calibration import calibrate_missing_fallback
from tests.unit.test_multimodal import INPUTS, make_batch, recipe_and_preprocessing

MODALITIES = ["text", "image"]
IMAGE, TEXT = INPUTS["image"], INPUTS["text"]


def model_with_fallback(fallback: bool = True, unimodal: float = 0.0):
    recipe, preprocessing = recipe_and_preprocessing("gated", MODALITIES)
    recipe.model.unimodal_loss = unimodal
    if fallback:
        recipe.model.missing_fallback = MissingFallbackSettings()
    torch.manual_seed(0)
    return build_model(recipe, preprocessing)


def rows(n_batches: int = 8) -> dict[str, torch.Tensor]:
    """Loader-format tensors: 4 * n_batches rows, some inputs missing, some labels missing."""
    batches = [make_batch(MODALITIES, seed=s) for s in range(n_batches)]
    tensors = {k: torch.cat([b[k] for b in batches]) for k in batches[0] if k != "row_id"}
    return {**tensors, "__row__": torch.arange(4 * n_batches)}


def missing(batch: dict, name: str) -> torch.Tensor:
    return ~batch[f"{name}_mask"].any(dim=1)


def test_off_adds_nothing_and_keeps_the_initialisation() -> None:
    plain, with_fallback = model_with_fallback(False), model_with_fallback(True)
    assert not any(key.startswith("missing_fallback.") for key in plain.state_dict())
    assert not any(key.startswith("missing_fallback.") for key, _ in with_fallback.named_parameters())  # buffers only
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(with_fallback.state_dict()[key], value)
    batch = make_batch(MODALITIES)
    plain.eval(), with_fallback.eval()
    out = with_fallback(batch)  # nothing calibrated: every task answers from the model
    torch.testing.assert_close(out.predictions["score"], plain(batch).predictions["score"])
    assert all((codes == MODEL).all() for codes in out.answered_by.values())


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
    model.missing_fallback.set({"score": torch.tensor(7.0), "label": torch.tensor([0.0, -1.0, -2.0])},
                               {(IMAGE, "score"): "prior"})
    batch = make_batch(MODALITIES)
    no_image = missing(batch, IMAGE)
    assert no_image.any() and not no_image.all()
    model.eval()
    out = model(batch)
    plain = model_with_fallback(False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("missing_fallback.")})
    reference = plain(batch)
    assert out.answered_by["score"].tolist() == [PRIOR if row else MODEL for row in no_image.tolist()]
    assert (out.answered_by["label"] == MODEL).all()
    assert (out.predictions["score"][no_image] == 7.0).all()
    torch.testing.assert_close(out.predictions["score"][~no_image], reference.predictions["score"][~no_image])
    torch.testing.assert_close(out.predictions["label"], reference.predictions["label"])
    model.train()  # training never sees the fallback: the heads learn from every row
    trained = model(batch)
    assert not (trained.predictions["score"][no_image] == 7.0).any() and not trained.answered_by


def test_a_single_input_head_answers_and_the_prior_wins_when_both_are_named() -> None:
    model = model_with_fallback(unimodal=1.0).eval()
    fallback = model.missing_fallback
    fallback.set({"score": torch.tensor(7.0)}, {(IMAGE, "label"): TEXT, (IMAGE, "score"): TEXT,
                                                (TEXT, "score"): "prior"})
    batch = rows(2)
    batch[f"{IMAGE}_mask"][0] = False  # row 0 has no text either
    no_image, no_text = missing(batch, IMAGE), missing(batch, TEXT)
    assert (no_image & ~no_text).any() and (no_image & no_text).any()
    out = model(batch)
    text_vector = model.encoders[TEXT](batch[TEXT], batch[f"{TEXT}_mask"]).pooled
    by_text = no_image & ~no_text
    for task in ("label", "score"):
        head = model.unimodal.heads[TEXT][task]
        torch.testing.assert_close(out.predictions[task][by_text], head(text_vector)[by_text])
        assert (out.answered_by[task][by_text] == fallback.input_names.index(TEXT)).all()
    # the text head cannot answer without text: label falls back to the model, score to its prior
    assert (out.answered_by["label"][no_image & no_text] == MODEL).all()
    assert (out.answered_by["score"][no_text] == PRIOR).all() and (out.predictions["score"][no_text] == 7.0).all()


def test_calibration_picks_the_source_that_beats_the_others_on_validation() -> None:
    """Validation targets are built so that, with the image missing, ``score`` is exactly what the text's
    own head predicts (the fused model beats a far-off prior, the text head beats the fused model) and
    ``label`` is always the training majority class (the prior beats the untrained model)."""
    model = model_with_fallback(unimodal=1.0).eval()
    validation = rows()
    no_image = {**validation, f"{IMAGE}_mask": torch.zeros_like(validation[f"{IMAGE}_mask"])}
    with torch.no_grad():
        text_vector = model.encoders[TEXT](no_image[TEXT], no_image[f"{TEXT}_mask"]).pooled
        validation["score"] = model.unimodal.heads[TEXT]["score"](text_vector)
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
    fallback = model.missing_fallback
    image = fallback.input_names.index(IMAGE)
    assert int(fallback.source[image, fallback.task_names.index("label")]) == PRIOR
    assert int(fallback.source[image, fallback.task_names.index("score")]) == fallback.input_names.index(TEXT)
    assert float(fallback.prior("score")) == 50.0
    batch = make_batch(MODALITIES)
    with torch.no_grad():  # the decisions act on the rows missing the image
        out = model(batch)
    no_image_rows = missing(batch, IMAGE)
    assert (out.answered_by["label"][no_image_rows] == PRIOR).all()
    assert math.isclose(float(out.predictions["label"][no_image_rows][0].softmax(-1)[0]),
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
    with torch.no_grad():
        fused = model(no_image).predictions["score"]
        text_vector = model.encoders[TEXT](no_image[TEXT], no_image[f"{TEXT}_mask"]).pooled
        single = model.unimodal.heads[TEXT]["score"](text_vector)
    assert (fused - single).abs().mean() > 0.01  # two different answers
    validation["score"] = (fused + single) / 2
    report = calibrate_missing_fallback(model, rows(), validation, batch_size=5, device=torch.device("cpu"))
    decided = report["inputs"][IMAGE]["score"]
    assert decided["answers"] == f"model+{TEXT}", decided
    assert decided["replacements"][f"model+{TEXT}"]["loss"] < 1e-10
    assert decided["replacements"][TEXT]["vs_model_lower_bound"] <= 0  # as far on the other side: no better
    fallback = model.missing_fallback
    code = int(fallback.source[fallback.input_names.index(IMAGE), fallback.task_names.index("score")])
    assert fallback.source_name(code) == f"model+{TEXT}" and fallback.head_input(code) == TEXT
    batch = make_batch(MODALITIES)
    by_blend = missing(batch, IMAGE) & ~missing(batch, TEXT)
    assert by_blend.any()
    with torch.no_grad():
        out = model(batch)
        fallback.source.fill_(MODEL)
        plain = model(batch).predictions["score"]
        head = model.unimodal.heads[TEXT]["score"](model.encoders[TEXT](batch[TEXT], batch[f"{TEXT}_mask"]).pooled)
    torch.testing.assert_close(out.predictions["score"][by_blend], ((plain + head) / 2)[by_blend])
    complete = ~missing(batch, IMAGE) & ~missing(batch, TEXT)  # (rows without the text follow its decisions)
    assert complete.any()
    torch.testing.assert_close(out.predictions["score"][complete], plain[complete])
    assert (out.answered_by["score"][by_blend] == code).all()


def test_complete_rows_answer_from_their_own_decision() -> None:
    """Validation targets are the average of the fused model and the text head on every row, so with
    every input present that average is picked; rows missing an input keep their own decisions, and the
    robustness share counts rows answered otherwise than complete rows are."""
    from mmcli.evaluation.robustness import rows_not_as_usual
    from mmcli.runs import ANSWERED_BY

    model = model_with_fallback(unimodal=1.0).eval()
    validation = rows()
    with torch.no_grad():
        fused = model(validation).predictions["score"]
        single = model.unimodal.heads[TEXT]["score"](model.encoders[TEXT](validation[TEXT], validation[f"{TEXT}_mask"]).pooled)
    validation["score"] = (fused + single) / 2
    complete = ~missing(validation, IMAGE) & ~missing(validation, TEXT)
    assert 1 < int(complete.sum()) < len(complete)
    report = calibrate_missing_fallback(model, rows(), validation, batch_size=5, device=torch.device("cpu"))
    assert report["complete"]["score"]["answers"] == f"model+{TEXT}", report["complete"]["score"]
    assert report["complete"]["score"]["rows"] == int(complete.sum())  # only rows with every input present
    fallback = model.missing_fallback
    blend = fallback.input_names.index(TEXT) + len(fallback.input_names)
    assert int(fallback.when_complete[fallback.task_names.index("score")]) == blend
    with torch.no_grad():
        out = model(validation)
    torch.testing.assert_close(out.predictions["score"][complete], validation["score"][complete])
    assert (out.answered_by["score"][complete] == blend).all()
    only_image_missing = missing(validation, IMAGE) & ~missing(validation, TEXT)
    assert only_image_missing.any()  # they follow the image's decision, not the complete rows'
    image_decision = int(fallback.source[fallback.input_names.index(IMAGE), fallback.task_names.index("score")])
    assert (out.answered_by["score"][only_image_missing] == image_decision).all()
    unusual = rows_not_as_usual(model, ANSWERED_BY, "score", out.answered_by["score"])
    assert not unusual[complete].any()


def test_complete_rows_off_and_checkpoints_from_before_it() -> None:
    model = model_with_fallback(unimodal=1.0).eval()
    model.missing_fallback.complete_rows = False
    report = calibrate_missing_fallback(model, rows(), rows(), batch_size=5, device=torch.device("cpu"))
    assert "complete" not in report and (model.missing_fallback.when_complete == MODEL).all()
    older = {k: v for k, v in model.state_dict().items() if k != "missing_fallback.when_complete"}
    fresh = model_with_fallback(unimodal=1.0)
    fresh.missing_fallback.when_complete.fill_(0)
    fresh.load_state_dict(older, strict=True)  # a checkpoint saved before complete-row decisions existed
    assert (fresh.missing_fallback.when_complete == MODEL).all()


def test_predictions_and_metrics_report_what_answered() -> None:
    from mmcli.evaluation.predictions import answer_counts, predict_tensors
    from mmcli.runs import ANSWERED_BY

    model = model_with_fallback()
    model.missing_fallback.set({}, {(TEXT, "label"): "prior"})
    tensors = rows(2)
    no_text = missing(tensors, TEXT)
    result = predict_tensors(model, tensors, batch_size=3, device=torch.device("cpu"))
    assert (result[ANSWERED_BY]["label"] == PRIOR).tolist() == no_text.tolist()
    assert (result[ANSWERED_BY]["score"] == MODEL).all()
    assert answer_counts(model, result[ANSWERED_BY]) == {"label": {"prior": int(no_text.sum())}, "score": {}}
    assert ANSWERED_BY not in predict_tensors(model_with_fallback(False), tensors, 3, torch.device("cpu"))


def test_robustness_report_lists_gate_drops_and_prior_answers_per_level() -> None:
    from mmcli.cli.render import robustness_table
    from mmcli.evaluation.robustness import LEVELS, robustness_report
    from mmcli.recipe.schema import CorruptionGateSettings

    recipe, preprocessing = recipe_and_preprocessing("gated", MODALITIES)
    recipe.model.missing_fallback = MissingFallbackSettings()
    recipe.model.corruption_gate = CorruptionGateSettings()
    torch.manual_seed(0)
    model = build_model(recipe, preprocessing)
    with torch.no_grad():  # the gate drops every image and no text; a row without the image answers score's prior
        for name, detector in model.corruption_gate.detectors.items():
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, 10.0 if name == IMAGE else -10.0]))
    model.missing_fallback.set({}, {(IMAGE, "score"): "prior"})
    tensors = rows(2)
    present = float(tensors[f"{IMAGE}_mask"].any(dim=1).float().mean())
    assert 0 < present < 1
    report = robustness_report(model, recipe, preprocessing, tensors, batch_size=3)
    image, text = report["inputs"][IMAGE], report["inputs"][TEXT]
    assert image["treated_as_missing"] == [round(present, 4)] * len(LEVELS)
    assert text["treated_as_missing"] == [0.0] * len(LEVELS)
    assert image["answered_by"]["missing"] == {"label": 0.0, "score": 1.0}
    assert image["answered_by"]["noise"]["score"] == [1.0] * len(LEVELS)  # dropped by the gate = missing
    assert text["answered_by"]["noise"]["score"] == [1.0] * len(LEVELS)
    assert [c.header for c in robustness_table(report).columns][-2:] == ["gate drops @1.0", "fallback if missing"]
