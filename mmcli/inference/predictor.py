"""Run a model over a split's tensors: the inference path of evaluate, predict, encode and validation.

``infer_batch`` is one batch: encode, the wrappers' look at the encodings, fuse, the supervised
objectives' predictions (with their decoding settings), the wrappers' look at the predictions.
``run_inference`` runs it over a split in batches and gathers what the caller needs: predictions (each
task's own collate: padding for sequences), each objective's outputs for its metrics, the wrappers'
per-row reports, the validation loss (each objective's own loss), and embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mmcli.data.loader import ROW_COLUMN, ShardedBatchSampler, batch_loader
from mmcli.models.representation import Representation

KEEP = ("pooled", "fused", "shared")  # embeddings run_inference can gather besides predictions


@dataclass
class Inference:
    """Everything gathered over a split (CPU tensors, rows in split order).

    ``predictions``: supervised objective -> prediction ``[N, ...]`` (as its ``collate`` gathers them); ``outputs``: other
    objective -> its :meth:`outputs` gathered; ``reports``: wrapper name -> its per-row report;
    ``loss``: the weighted validation loss (None without every task's targets, or with nothing to
    count); ``losses``: per objective in it; ``pooled`` / ``fused`` / ``shared``: embeddings when asked.
    """

    predictions: dict[str, Tensor] = field(default_factory=dict)
    outputs: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    reports: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    loss: float | None = None
    losses: dict[str, float] = field(default_factory=dict)
    pooled: dict[str, Tensor] = field(default_factory=dict)
    fused: Tensor | None = None
    shared: dict[str, Tensor] = field(default_factory=dict)


def infer_batch(model: Any, batch: dict[str, Tensor], decoding: dict[str, dict[str, Any]] | None = None
                ) -> tuple[Representation, dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """``(representation, predictions, reports)`` for one batch, wrappers applied; ``decoding``: task ->
    its decoding settings (beam size, ...)."""
    encoded = model.backbone.encode(batch)
    reports: dict[str, dict[str, Tensor]] = {}
    for name, wrapper in model.wrappers.items():
        encoded, reports[name] = wrapper.before_fusion(model, encoded, batch)
    rep = model.backbone.fuse(encoded)
    decoding = decoding or {}
    predictions = {name: task.predict(rep, batch, **decoding.get(name, {})) for name, task in model.tasks.items()}
    for name, wrapper in model.wrappers.items():
        predictions, report = wrapper.after_prediction(model, rep, predictions)
        reports[name] = {**reports[name], **report}
    return rep, predictions, reports


def _batch_losses(model: Any, rep: Representation, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The validation losses of one batch: each objective that counts in the validation loss, its own loss."""
    losses = {}
    for name, objective in model.objectives.items():
        if not objective.in_validation_loss:
            continue
        loss = objective.loss(rep, batch)
        if loss is not None:
            losses[name] = loss
    return losses


@torch.no_grad()
def run_inference(model: Any, tensors: dict[str, Tensor], batch_size: int, device: torch.device,
                  keep: tuple[str, ...] = (), decoding: dict[str, dict[str, Any]] | None = None) -> Inference:
    """Evaluation mode, no gradient, batches in row order. ``keep``: embeddings to gather (``KEEP``);
    ``decoding``: task -> its decoding settings."""
    model.eval()
    tasks = model.tasks
    scored = all(name in tensors for name in tasks)  # without every task's targets (predict) there is no loss
    gathered: dict[str, list[Tensor]] = {}
    outputs: dict[str, dict[str, list[Tensor]]] = {}
    reports: dict[str, dict[str, list[Tensor]]] = {}
    batch_losses: list[tuple[dict[str, Tensor], int]] = []
    pooled: dict[str, list[Tensor]] = {}
    shared: dict[str, list[Tensor]] = {}
    fused: list[Tensor] = []
    sampler = ShardedBatchSampler(len(tensors[ROW_COLUMN]), batch_size, shuffle=False)
    for batch in batch_loader(tensors, sampler):
        batch = {key: value.to(device) for key, value in batch.items()}
        rep, predictions, batch_reports = infer_batch(model, batch, decoding)
        for name, value in predictions.items():
            gathered.setdefault(name, []).append(value.detach().cpu())
        for name, objective in model.objectives.items():
            if not objective.supervised:
                for key, value in objective.outputs(rep).items():
                    outputs.setdefault(name, {}).setdefault(key, []).append(value.float().cpu())
        for name, report in batch_reports.items():
            for key, value in report.items():
                reports.setdefault(name, {}).setdefault(key, []).append(value.cpu())
        if scored:
            batch_losses.append((_batch_losses(model, rep, batch), len(batch[ROW_COLUMN])))
        if "pooled" in keep:
            for name, output in rep.encoded.items():
                pooled.setdefault(name, []).append(output.pooled.float().cpu())
        if "fused" in keep:
            fused.append(rep.fused.float().cpu())
        if "shared" in keep:
            for name, value in rep.shared.items():
                shared.setdefault(name, []).append(value.float().cpu())
    result = Inference(predictions={name: tasks[name].collate(values) for name, values in gathered.items()},
                       outputs={name: {key: torch.cat(v) for key, v in values.items()} for name, values in outputs.items()},
                       reports={name: {key: torch.cat(v) for key, v in values.items()} for name, values in reports.items()},
                       pooled={name: torch.cat(values) for name, values in pooled.items()},
                       fused=torch.cat(fused) if fused else None,
                       shared={name: torch.cat(values) for name, values in shared.items()})
    result.loss, result.losses = _mean_losses(model, batch_losses)
    return result


def _mean_losses(model: Any, batch_losses: list[tuple[dict[str, Tensor], int]]) -> tuple[float | None, dict[str, float]]:
    """Row-weighted means over batches of the weighted total and of each objective's loss (host
    conversions happen here, once per split, not per batch)."""
    rows = sum(count for _, count in batch_losses)
    if not rows or not any(losses for losses, _ in batch_losses):
        return None, {}
    total, per_objective = 0.0, {}
    for losses, count in batch_losses:
        weighted = sum(model.objectives[name].weight * loss for name, loss in losses.items())
        total += float(weighted) * count
        for name, loss in losses.items():
            per_objective[name] = per_objective.get(name, 0.0) + float(loss) * count
    return total / rows, {name: value / rows for name, value in per_objective.items()}
