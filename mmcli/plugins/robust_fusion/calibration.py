"""After training: decide, for each (missing input or none, task), what answers the task
(``model.missing_fallback``; why in docs/robust-fusion.md)."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import torch

from mmcli.errors import RecipeError
from mmcli.evaluation.robustness import without
from mmcli.inference.predictor import Inference, run_inference
from mmcli.plugins.robust_fusion.missing_fallback import MODEL, NAME
from mmcli.plugins.robust_fusion.task_protocol import robust_tasks
from mmcli.plugins.robust_fusion.unimodal import NAME as UNIMODAL
from mmcli.runs import BEST_CHECKPOINT, atomic_write_json
from mmcli.training.callbacks.base import Callback
from mmcli.training.checkpoints import save_checkpoint

MISSING_FALLBACK_FILE = "missing_fallback.json"


class FallbackCalibration(Callback):
    """Calibrates the fallback on the validation split once the best weights are loaded; saves the
    decisions (buffers of the model) into the best checkpoint and the measurements behind them into
    ``missing_fallback.json``; reports the decisions that differ from "the fused model" in
    ``metrics.json`` (``training.missing_fallback``, ``training.complete_rows``)."""

    def on_train_begin(self, run: Any) -> None:
        if run.validation is None:
            raise RecipeError("model.missing_fallback: needs a validation split to measure what answers each task best "
                              "with an input missing (data.validation_split names none that has rows)",
                              hint="add validation rows to the manifest, or remove model.missing_fallback")

    def on_train_end(self, run: Any) -> dict[str, Any] | None:
        if not run.is_main:
            return None
        report = calibrate_missing_fallback(run.model, run.train, run.validation,
                                            run.recipe.training.eval_batch_size, run.device)
        save_checkpoint(run.run_dir / BEST_CHECKPOINT, run.model, run.best_info)  # the decisions are buffers
        atomic_write_json(run.run_dir / MISSING_FALLBACK_FILE, report)
        extras: dict[str, Any] = {"missing_fallback": {  # missing input -> {task: what answers instead of the model}
            name: {task: decision["answers"] for task, decision in tasks.items() if decision["answers"] != "model"}
            for name, tasks in report["inputs"].items()}}
        if "complete" in report:  # rows with every input present: {task: what answers instead}
            extras["complete_rows"] = {task: decision["answers"] for task, decision in report["complete"].items()
                                       if decision["answers"] != "model"}
        return extras


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
    """Set the model's fallback from the training labels (priors) and the validation rows (sources)
    and return the measurements behind each decision (JSON-ready).

    For input ``i`` and task ``t``, every validation row's loss with ``i`` removed under the fused model,
    the prior and (with ``model.unimodal_loss``) each remaining input's single-input head: the prior
    answers unless the fused model beats it (lower one-sided ``confidence`` bound of the mean paired
    advantage above 0); then a single-input head, or its average with the fused model, may replace the
    fused model (:func:`_best_replacement`). A task with fewer than 2 labelled validation rows has no
    evidence either way and answers its prior. With ``complete_rows``, the validation rows with every
    input present, nothing removed, decide between the fused model and its replacements the same way."""
    fallback = model.wrappers[NAME]
    unimodal = model.objectives[UNIMODAL] if UNIMODAL in model.objectives else None
    fallback.source.fill_(MODEL)  # measure the model itself
    fallback.when_complete.fill_(MODEL)
    priors = {task: objective.prior(train_tensors[task]) for task, objective in robust_tasks(model.tasks).items()}
    fallback.set(priors, {})
    z = NormalDist().inv_cdf(fallback.confidence)
    sources: dict[tuple[str | None, str], str] = {}
    report: dict[str, Any] = {"confidence": fallback.confidence, "rows": len(validation["__row__"]), "inputs": {}}
    for name in model.encoders:
        evaluated = run_inference(model, without(validation, name), batch_size, device, keep=("pooled",))
        report["inputs"][name] = {}
        for task, objective in robust_tasks(model.tasks).items():
            target = validation[task]
            labelled = objective.labelled(target)
            model_loss = objective.row_loss(evaluated.predictions[task], target)[labelled]
            prior_loss = objective.row_loss(priors[task].expand_as(evaluated.predictions[task]), target)[labelled]
            versus_prior = _lower_bound(prior_loss - model_loss, z)
            entry: dict[str, Any] = {"rows": int(labelled.sum()), "model_loss": _mean(model_loss),
                                     "prior_loss": _mean(prior_loss),
                                     "model_vs_prior_lower_bound": _finite(versus_prior)}
            source = "model" if versus_prior > 0 else "prior"
            if source == "model" and unimodal is not None:
                source = _best_replacement(model, unimodal, task, name, evaluated, target, labelled, model_loss, entry,
                                           device)
            entry["answers"] = source
            sources[(name, task)] = source
            report["inputs"][name][task] = entry
    if fallback.complete_rows and unimodal is not None:
        evaluated = run_inference(model, validation, batch_size, device, keep=("pooled",))
        rows = len(validation["__row__"])
        complete = torch.stack([validation[f"{name}_mask"].reshape(rows, -1).any(dim=1)
                                for name in model.encoders]).all(dim=0)
        report["complete"] = {}
        for task, objective in robust_tasks(model.tasks).items():
            target = validation[task]
            labelled = objective.labelled(target) & complete
            model_loss = objective.row_loss(evaluated.predictions[task], target)[labelled]
            entry = {"rows": int(labelled.sum()), "model_loss": _mean(model_loss)}
            entry["answers"] = _best_replacement(model, unimodal, task, None, evaluated, target, labelled, model_loss,
                                                 entry, device)
            sources[(None, task)] = entry["answers"]
            report["complete"][task] = entry
    fallback.set(priors, sources)
    return report


def _best_replacement(model: Any, unimodal: Any, task: str, missing: str | None, evaluated: Inference,
                      target: torch.Tensor, labelled: torch.Tensor, model_loss: torch.Tensor, entry: dict[str, Any],
                      device: torch.device) -> str:
    """The source that replaces the fused model for ``task`` without ``missing`` (None: on rows with every
    input present), else "model": the eligible candidate with the lowest mean validation loss. A
    remaining input's head is eligible if it beats the fused model at the fallback's confidence
    (Bonferroni over the heads compared); its average with the fused model, if its mean loss is lower
    (docs/robust-fusion.md says why). Each candidate's mean loss and bound go to ``entry["replacements"]``."""
    objective = model.tasks[task]
    fused = evaluated.predictions[task]
    others = [other for other in evaluated.pooled if other != missing]
    # several heads compete for one decision: Bonferroni keeps the chance of a false switch at 1 - confidence
    confidence = model.wrappers[NAME].confidence
    z = NormalDist().inv_cdf(1 - (1 - confidence) / max(len(others), 1))
    entry["replacements"] = {}
    source, lowest = "model", float(model_loss.mean()) if len(model_loss) else math.inf
    for other in others:
        single = unimodal.predict(other, task, evaluated.pooled[other].to(device)).cpu()
        for candidate, prediction in ((other, single), (f"model+{other}", objective.average([fused, single]))):
            loss = objective.row_loss(prediction, target)[labelled]
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
