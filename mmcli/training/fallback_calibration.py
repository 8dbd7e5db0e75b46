"""After training: decide, for each (missing input or none, task), what answers the task (``model.missing_fallback``;
why in :mod:`mmcli.models.missing_fallback`)."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch

from mmcli.evaluation.predictions import predict_tensors
from mmcli.evaluation.robustness import without
from mmcli.models.missing_fallback import MODEL

MISSING_FALLBACK_FILE = "missing_fallback.json"


def _lower_bound(advantage: torch.Tensor, z: float) -> float:
    """One-sided lower confidence bound of the mean of per-row advantages (-inf with under 2 rows)."""
    rows = len(advantage)
    if rows < 2:
        return -math.inf
    return float(advantage.mean()) - z * float(advantage.std()) / math.sqrt(rows)


@torch.no_grad()
def calibrate_missing_fallback(model: Any, train_tensors: dict[str, torch.Tensor],
                               validation: dict[str, torch.Tensor], batch_size: int,
                               device: torch.device) -> dict[str, Any]:
    """Set ``model.missing_fallback`` from the training labels (priors) and the validation rows (sources)
    and return the measurements behind each decision (JSON-ready).

    For input ``i`` and task ``t``, every validation row's loss with ``i`` removed under the fused model,
    the prior and (with ``model.unimodal_loss``) each remaining input's single-input head: the prior
    answers unless the fused model beats it (lower one-sided ``confidence`` bound of the mean paired
    advantage above 0); then a single-input head, or its average with the fused model, may replace the
    fused model (:func:`_best_replacement`). A task with fewer than 2 labelled validation rows has no
    evidence either way and answers its prior. With ``complete_rows``, the validation rows with every
    input present, nothing removed, decide between the fused model and its replacements the same way."""
    fallback = model.missing_fallback
    fallback.source.fill_(MODEL)  # measure the model itself
    fallback.when_complete.fill_(MODEL)
    priors = {task: head.prior(train_tensors[task]) for task, head in model.tasks.items()}
    fallback.set(priors, {})
    z = NormalDist().inv_cdf(fallback.confidence)
    sources: dict[tuple[str, str], str] = {}
    report: dict[str, Any] = {"confidence": fallback.confidence, "rows": len(validation["__row__"]), "inputs": {}}
    for name in model.encoders:
        removed = without(validation, name)
        evaluated = predict_tensors(model, removed, batch_size, device, keep=("encoded",))
        report["inputs"][name] = {}
        for task, head in model.tasks.items():
            target = validation[task]
            labelled = head.labelled(target)
            model_loss = head.row_loss(evaluated["predictions"][task], target)[labelled]
            prior_loss = head.row_loss(priors[task].expand_as(evaluated["predictions"][task]), target)[labelled]
            versus_prior = _lower_bound(prior_loss - model_loss, z)
            entry: dict[str, Any] = {"rows": int(labelled.sum()), "model_loss": _mean(model_loss),
                                     "prior_loss": _mean(prior_loss),
                                     "model_vs_prior_lower_bound": _finite(versus_prior)}
            source = "model" if versus_prior > 0 else "prior"
            if source == "model" and getattr(model, "unimodal", None) is not None:
                source = _best_replacement(model, task, name, evaluated, target, labelled, model_loss, entry, device)
            entry["answers"] = source
            sources[(name, task)] = source
            report["inputs"][name][task] = entry
    if fallback.complete_rows and getattr(model, "unimodal", None) is not None:
        evaluated = predict_tensors(model, validation, batch_size, device, keep=("encoded",))
        rows = len(validation["__row__"])
        complete = torch.stack([validation[f"{name}_mask"].reshape(rows, -1).any(dim=1)
                                for name in model.encoders]).all(dim=0)
        report["complete"] = {}
        for task, head in model.tasks.items():
            target = validation[task]
            labelled = head.labelled(target) & complete
            model_loss = head.row_loss(evaluated["predictions"][task], target)[labelled]
            entry = {"rows": int(labelled.sum()), "model_loss": _mean(model_loss)}
            entry["answers"] = _best_replacement(model, task, None, evaluated, target, labelled, model_loss, entry, device)
            sources[(None, task)] = entry["answers"]
            report["complete"][task] = entry
    fallback.set(priors, sources)
    return report


def _best_replacement(model: Any, task: str, missing: str | None, evaluated: dict[str, Any], target: torch.Tensor,
                      labelled: torch.Tensor, model_loss: torch.Tensor, entry: dict[str, Any],
                      device: torch.device) -> str:
    """The source that replaces the fused model for ``task`` without ``missing`` (None: on rows with every
    input present), else "model": of the eligible candidates, the one with the lowest mean validation
    loss. A remaining input's single-input head is eligible if it beats the fused model at the
    fallback's confidence, corrected for the number of heads compared (Bonferroni); that head averaged
    with the fused model is eligible if its mean loss is below the fused model's. Averaging needs no test: on a convex loss (squared error,
    cross-entropy of the averaged probabilities) the average's loss is at most the mean of its two
    members' on every row, so a wrong choice costs at most half the head's excess, while the gain is
    too small for 200 rows to show at 95% (shapes, ``size`` without the video: -5.6% loss, t = 0.7)
    and real on 4,000 fresh rows. Each candidate's mean loss and bound go to ``entry["replacements"]``."""
    head = model.tasks[task]
    fused = evaluated["predictions"][task]
    others = [other for other in evaluated["encoded"] if other != missing]
    # several heads compete for one decision: Bonferroni keeps the chance of a false switch at
    # 1 - confidence (uncorrected, 2 of 5 seeds on shapes switched `size` to a head that was better on
    # 200 validation rows and worse on 4,000 fresh ones)
    confidence = model.missing_fallback.confidence
    z = NormalDist().inv_cdf(1 - (1 - confidence) / max(len(others), 1))
    entry["replacements"] = {}
    source, lowest = "model", float(model_loss.mean()) if len(model_loss) else math.inf
    for other in others:
        single = model.unimodal.heads[other][task](evaluated["encoded"][other].to(device)).cpu()
        for candidate, prediction in ((other, single), (f"model+{other}", head.average([fused, single]))):
            loss = head.row_loss(prediction, target)[labelled]
            bound = _lower_bound(model_loss - loss, z)
            entry["replacements"][candidate] = {"loss": _mean(loss), "vs_model_lower_bound": _finite(bound)}
            eligible = bound > 0 if candidate == other else len(loss) > 1
            if eligible and float(loss.mean()) < lowest:
                source, lowest = candidate, float(loss.mean())
    return source


def _mean(values: torch.Tensor) -> float | None:
    return round(float(values.mean()), 6) if len(values) else None


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None
