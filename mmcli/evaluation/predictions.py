"""Run a model over a split's tensors and turn predictions into per-task metrics."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.data.loader import iterate_batches
from mmcli.models.missing_fallback import MODEL
from mmcli.runs import ANSWERED_BY, TREATED_AS_MISSING


@torch.no_grad()
def predict_tensors(model: Any, tensors: dict[str, torch.Tensor], batch_size: int, device: torch.device,
                    keep: tuple[str, ...] = ()) -> dict[str, Any]:
    """Concatenated predictions per task (and any ``keep`` outputs: "encoded", "fused"), plus loss and, for
    a model with a corruption gate, ``treated_as_missing``: input -> ``[N]`` bool (rows judged corrupted), and
    for one with a missing-input fallback, ``answered_by``: task -> ``[N]`` source codes (-1: the fused model)."""
    model.eval()
    predictions: dict[str, list[torch.Tensor]] = {}
    pooled: dict[str, list[torch.Tensor]] = {}
    fused: list[torch.Tensor] = []
    gated: dict[str, list[torch.Tensor]] = {}
    answered: dict[str, list[torch.Tensor]] = {}
    total_loss, rows = 0.0, 0
    for batch in iterate_batches(tensors, batch_size):
        batch = {k: v.to(device) for k, v in batch.items()}
        output = model(batch)
        if all(task in batch for task in output.predictions):
            loss, _ = model.compute_loss(output, batch)
            total_loss += float(loss) * len(batch["__row__"])
            rows += len(batch["__row__"])
        for task, value in output.predictions.items():
            predictions.setdefault(task, []).append(value.float().cpu())
        if "encoded" in keep:
            for name, encoded in output.encoded.items():
                pooled.setdefault(name, []).append(encoded.pooled.float().cpu())
        if "fused" in keep:
            fused.append(output.fused.float().cpu())
        for name, rows_gated in output.gated.items():
            gated.setdefault(name, []).append(rows_gated.cpu())
        for task, rows_answered in output.answered_by.items():
            answered.setdefault(task, []).append(rows_answered.cpu())
    result: dict[str, Any] = {"predictions": {t: torch.cat(v) for t, v in predictions.items()}}
    result["loss"] = total_loss / rows if rows else None
    if "encoded" in keep:
        result["encoded"] = {n: torch.cat(v) for n, v in pooled.items()}
    if "fused" in keep:
        result["fused"] = torch.cat(fused)
    if gated:
        result[TREATED_AS_MISSING] = {n: torch.cat(v) for n, v in gated.items()}
    if answered:
        result[ANSWERED_BY] = {t: torch.cat(v) for t, v in answered.items()}
    return result


def answer_counts(model: Any, answered_by: dict[str, torch.Tensor]) -> dict[str, dict[str, int]]:
    """task -> {source: rows} for the rows a missing-input fallback answered other than by the fused model
    (source: "prior", the input whose single-input head answered, or "model+<input>": their average)."""
    fallback = model.missing_fallback
    return {task: {fallback.source_name(int(code)): int((codes == code).sum())
                   for code in codes.unique() if int(code) != MODEL}
            for task, codes in answered_by.items()}


def task_metrics(model: Any, predictions: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    from mmcli.evaluation.metrics_loader import compute_metrics

    metrics: dict[str, dict] = {}
    for task, head in model.tasks.items():
        if task not in tensors:
            continue
        bad = int((~torch.isfinite(predictions[task])).any(dim=-1).sum()) if predictions[task].dim() > 1 \
            else int((~torch.isfinite(predictions[task])).sum())
        if bad:
            # a diverged model: report it instead of letting a metric library crash on NaN
            metrics[task] = {name: None for name in head.metrics} | {"count": len(predictions[task]), "non_finite": bad}
            continue
        preds, refs = head.metric_inputs(predictions[task], tensors[task])
        metrics[task] = compute_metrics(list(head.metrics), preds, refs) if len(refs) else {}
        metrics[task]["count"] = len(refs)
    return metrics


def evaluate_splits(model: Any, recipe: Any, datasets: Any, splits: list[str]) -> dict[str, Any]:
    """{split: {task: {metric: value}, "loss": value}} for each split, with the model as it is."""
    from mmcli.data.loader import split_tensors

    device = next(model.parameters()).device
    results: dict[str, Any] = {}
    for split in splits:
        tensors = split_tensors(datasets[split], list(recipe.inputs), list(recipe.tasks))
        evaluated = predict_tensors(model, tensors, recipe.training.eval_batch_size, device)
        results[split] = task_metrics(model, evaluated["predictions"], tensors)
        results[split]["loss"] = evaluated["loss"]
        results[split]["rows"] = len(tensors["__row__"])
        if TREATED_AS_MISSING in evaluated:  # the corruption gate's verdicts: never silent
            results[split][TREATED_AS_MISSING] = {n: int(v.sum()) for n, v in evaluated[TREATED_AS_MISSING].items()}
        if ANSWERED_BY in evaluated:
            results[split][ANSWERED_BY] = answer_counts(model, evaluated[ANSWERED_BY])
    return results
