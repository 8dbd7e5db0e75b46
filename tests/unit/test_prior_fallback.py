"""model.prior_fallback: a task answers its prior when an input it cannot do without is missing."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from mmcli.models.multimodal import build_model
from mmcli.recipe.schema import PriorFallbackSettings
from mmcli.training.prior_calibration import calibrate_prior_fallback
from tests.unit.test_multimodal import INPUTS, make_batch, recipe_and_preprocessing

MODALITIES = ["text", "image"]
IMAGE, TEXT = INPUTS["image"], INPUTS["text"]


def model_with_fallback(fallback: bool = True):
    recipe, preprocessing = recipe_and_preprocessing("gated", MODALITIES)
    if fallback:
        recipe.model.prior_fallback = PriorFallbackSettings()
    torch.manual_seed(0)
    return build_model(recipe, preprocessing)


def rows(n_batches: int = 8) -> dict[str, torch.Tensor]:
    """Loader-format tensors: 4 * n_batches rows, some inputs missing, some labels missing."""
    batches = [make_batch(MODALITIES, seed=s) for s in range(n_batches)]
    tensors = {k: torch.cat([b[k] for b in batches]) for k in batches[0] if k != "row_id"}
    return {**tensors, "__row__": torch.arange(4 * n_batches)}


def test_off_adds_nothing_and_keeps_the_initialisation() -> None:
    plain, with_fallback = model_with_fallback(False), model_with_fallback(True)
    assert not any(key.startswith("prior_fallback.") for key in plain.state_dict())
    assert not any(key.startswith("prior_fallback.") for key, _ in with_fallback.named_parameters())  # buffers only
    for key, value in plain.state_dict().items():
        torch.testing.assert_close(with_fallback.state_dict()[key], value)
    batch = make_batch(MODALITIES)
    plain.eval(), with_fallback.eval()
    out = with_fallback(batch)  # nothing calibrated: every task answers from the model
    torch.testing.assert_close(out.predictions["score"], plain(batch).predictions["score"])
    assert not any(flags.any() for flags in out.answered_by_prior.values())


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
    model.prior_fallback.set({"score": torch.tensor(7.0), "label": torch.tensor([0.0, -1.0, -2.0])},
                             {(IMAGE, "score"): True})
    batch = make_batch(MODALITIES)
    missing_image = ~batch[f"{IMAGE}_mask"].any(dim=1)
    assert missing_image.any() and not missing_image.all()
    model.eval()
    out = model(batch)
    plain = model_with_fallback(False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prior_fallback.")})
    reference = plain(batch)
    assert out.answered_by_prior["score"].tolist() == missing_image.tolist()
    assert not out.answered_by_prior["label"].any()
    assert (out.predictions["score"][missing_image] == 7.0).all()
    torch.testing.assert_close(out.predictions["score"][~missing_image], reference.predictions["score"][~missing_image])
    torch.testing.assert_close(out.predictions["label"], reference.predictions["label"])
    model.train()  # training never sees the prior: the heads learn from every row
    trained = model(batch)
    assert not (trained.predictions["score"][missing_image] == 7.0).any() and not trained.answered_by_prior


def test_calibration_keeps_the_model_only_where_it_beats_the_prior() -> None:
    """Validation targets are built so that, with the image missing, ``score`` is exactly what the model
    predicts (the model wins) and ``label`` is the training majority class (the prior wins)."""
    model = model_with_fallback()
    model.eval()
    validation = rows()
    no_image = {**validation, f"{IMAGE}_mask": torch.zeros_like(validation[f"{IMAGE}_mask"])}
    with torch.no_grad():
        own = model(no_image).predictions["score"]
    validation["score"] = own.clone()
    validation["label"] = torch.zeros_like(validation["label"])
    train_rows = rows()
    train_rows["label"] = torch.zeros_like(train_rows["label"])
    report = calibrate_prior_fallback(model, train_rows, validation, batch_size=5, device=torch.device("cpu"))
    decided = report["inputs"][IMAGE]
    assert decided["score"]["answers"] == "model" and decided["score"]["model_loss"] < 1e-10
    assert decided["label"]["answers"] == "prior" and decided["label"]["advantage_lower_bound"] < 0
    assert decided["score"]["rows"] == len(validation["__row__"])
    fallback = model.prior_fallback
    assert bool(fallback.fallback[fallback.input_names.index(IMAGE), fallback.task_names.index("label")])
    assert not bool(fallback.fallback[fallback.input_names.index(IMAGE), fallback.task_names.index("score")])
    torch.testing.assert_close(fallback.prior("score"), train_rows["score"][~train_rows["score"].isnan()].mean())
    with torch.no_grad():  # the decisions act on the rows missing the image
        out = model(make_batch(MODALITIES))
    missing_image = ~make_batch(MODALITIES)[f"{IMAGE}_mask"].any(dim=1)
    assert (out.answered_by_prior["label"] >= missing_image).all()
    assert math.isclose(float(out.predictions["label"][missing_image][0].softmax(-1)[0]),
                        float(fallback.prior("label").softmax(-1)[0]), rel_tol=1e-6)


def test_predictions_and_metrics_report_the_rows_answered_by_the_prior() -> None:
    from mmcli.evaluation.predictions import predict_tensors
    from mmcli.runs import ANSWERED_BY_PRIOR

    model = model_with_fallback()
    model.prior_fallback.set({}, {(TEXT, "label"): True})
    tensors = rows(2)
    missing_text = ~tensors[f"{TEXT}_mask"].any(dim=1)
    result = predict_tensors(model, tensors, batch_size=3, device=torch.device("cpu"))
    assert result[ANSWERED_BY_PRIOR]["label"].tolist() == missing_text.tolist()
    assert not result[ANSWERED_BY_PRIOR]["score"].any()
    assert ANSWERED_BY_PRIOR not in predict_tensors(model_with_fallback(False), tensors, 3, torch.device("cpu"))


def test_robustness_report_lists_gate_drops_and_prior_answers_per_level() -> None:
    from mmcli.cli.render import robustness_table
    from mmcli.evaluation.robustness import LEVELS, robustness_report
    from mmcli.recipe.schema import CorruptionGateSettings

    recipe, preprocessing = recipe_and_preprocessing("gated", MODALITIES)
    recipe.model.prior_fallback = PriorFallbackSettings()
    recipe.model.corruption_gate = CorruptionGateSettings()
    torch.manual_seed(0)
    model = build_model(recipe, preprocessing)
    with torch.no_grad():  # the gate drops every image and no text; a row without the image answers score's prior
        for name, detector in model.corruption_gate.detectors.items():
            detector[-1].weight.zero_()
            detector[-1].bias.copy_(torch.tensor([1.0, 10.0 if name == IMAGE else -10.0]))
    model.prior_fallback.set({}, {(IMAGE, "score"): True})
    tensors = rows(2)
    present = float(tensors[f"{IMAGE}_mask"].any(dim=1).float().mean())
    assert 0 < present < 1
    report = robustness_report(model, recipe, preprocessing, tensors, batch_size=3)
    image, text = report["inputs"][IMAGE], report["inputs"][TEXT]
    assert image["treated_as_missing"] == [round(present, 4)] * len(LEVELS)
    assert text["treated_as_missing"] == [0.0] * len(LEVELS)
    assert image["answered_by_prior"]["missing"] == {"label": 0.0, "score": 1.0}
    assert image["answered_by_prior"]["noise"]["score"] == [1.0] * len(LEVELS)  # dropped by the gate = missing
    assert text["answered_by_prior"]["noise"]["score"] == [1.0] * len(LEVELS)
    assert [c.header for c in robustness_table(report).columns][-2:] == ["gate drops @1.0", "prior if missing"]
