"""After training: decide, for each (input, task), whether a row missing the input answers the task's
prior (``model.prior_fallback``; why in :mod:`mmcli.models.prior_fallback`)."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch

from mmcli.evaluation.predictions import predict_tensors
from mmcli.evaluation.robustness import without

PRIOR_FALLBACK_FILE = "prior_fallback.json"


@torch.no_grad()
def calibrate_prior_fallback(model: Any, train_tensors: dict[str, torch.Tensor], validation: dict[str, torch.Tensor],
                             batch_size: int, device: torch.device) -> dict[str, Any]:
    """Set ``model.prior_fallback`` from the training labels (priors) and the validation rows (decisions)
    and return the measurements behind each decision (JSON-ready).

    For input ``i`` and task ``t``: every validation row's loss with ``i`` removed, under the model and
    under the prior; the model keeps answering ``t`` without ``i`` only if the lower bound of the
    one-sided ``confidence`` interval of the mean paired advantage (prior loss minus model loss) is
    above 0. Tasks with fewer than 2 labelled validation rows keep the model (no evidence)."""
    fallback = model.prior_fallback
    fallback.fallback.zero_()  # measure the model itself
    priors = {task: head.prior(train_tensors[task]) for task, head in model.tasks.items()}
    fallback.set(priors, {})
    z = NormalDist().inv_cdf(fallback.confidence)
    decisions: dict[tuple[str, str], bool] = {}
    report: dict[str, Any] = {"confidence": fallback.confidence, "rows": len(validation["__row__"]), "inputs": {}}
    for name in model.encoders:
        predicted = predict_tensors(model, without(validation, name), batch_size, device)["predictions"]
        report["inputs"][name] = {}
        for task, head in model.tasks.items():
            target = validation[task]
            labelled = head.labelled(target)
            rows = int(labelled.sum())
            prediction = predicted[task]
            model_loss = head.row_loss(prediction, target)[labelled]
            prior_loss = head.row_loss(priors[task].expand_as(prediction), target)[labelled]
            advantage = prior_loss - model_loss
            mean = float(advantage.mean()) if rows else 0.0
            lower = mean - z * float(advantage.std()) / math.sqrt(rows) if rows >= 2 else math.inf
            decisions[(name, task)] = not lower > 0
            report["inputs"][name][task] = {
                "rows": rows, "model_loss": round(float(model_loss.mean()), 6) if rows else None,
                "prior_loss": round(float(prior_loss.mean()), 6) if rows else None,
                "advantage_lower_bound": round(lower, 6) if math.isfinite(lower) else None,
                "answers": "prior" if decisions[(name, task)] else "model"}
    fallback.set(priors, decisions)
    return report
