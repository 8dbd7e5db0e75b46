"""Robustness: metrics with each input missing and under rising noise (MultiBench-style).

Noise at level ``l`` in [0, 1] is ``mmcli.data.corruption``'s model (Gaussian noise on pixels
and audio features, token dropout on text). Relative robustness is the area under the metric-vs-noise curve
(trapezoid over the levels, as MultiBench computes it); effective robustness is the sum of
the curve's gaps to a reference curve shifted to the same clean score, and needs a reference
run (MultiBench uses late fusion), so it is reported only when one is given.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmcli.data.corruption import corrupt_rows
from mmcli.models.missing_fallback import MODEL
from mmcli.runs import ANSWERED_BY, TREATED_AS_MISSING, atomic_write_bytes

LEVELS = tuple(round(0.1 * i, 1) for i in range(11))


def corrupt(tensors: dict[str, torch.Tensor], name: str, modality: str, spec: dict, level: float,
            generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A copy of ``tensors`` with input ``name`` corrupted at ``level`` (no other column changes)."""
    if level <= 0:
        return dict(tensors)
    rows = tensors[f"{name}_mask"].shape[0]
    return corrupt_rows(tensors, name, modality, spec, torch.full((rows,), float(level)), generator)


def without(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``tensors`` with input ``name`` missing for every row."""
    out = dict(tensors)
    out[f"{name}_mask"] = torch.zeros_like(tensors[f"{name}_mask"])
    return out


def relative_robustness(curve: list[float]) -> float:
    return float(np.trapezoid(curve, LEVELS[: len(curve)]))


def effective_robustness(curve: list[float], reference: list[float]) -> float:
    f, ref = np.asarray(curve), np.asarray(reference)
    return float(np.sum(f - (ref + (f[0] - ref[0]))))


def robustness_report(model: Any, recipe: Any, preprocessing: dict, tensors: dict[str, torch.Tensor],
                      batch_size: int, seed: int = 0, reference: dict | None = None) -> dict[str, Any]:
    """{input: {"missing": {task: score}, "noise": {task: [score per level]}, "relative": {...}, "effective": {...}}}
    using each task's main metric. A model with a corruption gate adds, per input, ``treated_as_missing``:
    the share of rows whose input the gate dropped, per level; one with a missing-input fallback adds
    ``answered_by``: ``{"missing": {task: share}, "noise": {task: [share per level]}}``, the share of rows
    a task answered otherwise than rows with every input present (its prior, a single-input head...)."""
    from mmcli.evaluation.predictions import predict_tensors, task_metrics

    device = next(model.parameters()).device

    def scores(data: dict[str, torch.Tensor]) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
        """(main metric per task, {TREATED_AS_MISSING: {input: share}, ANSWERED_BY: {task: share}})."""
        evaluated = predict_tensors(model, data, batch_size, device)
        measured = task_metrics(model, evaluated["predictions"], data)
        shares = {key: {k: round(float(rows_not_as_usual(model, key, k, v).float().mean()), 4)
                        for k, v in evaluated[key].items()}
                  for key in (TREATED_AS_MISSING, ANSWERED_BY) if key in evaluated}
        return {task: measured[task][head.main_metric] for task, head in model.tasks.items() if task in measured}, shares

    report: dict[str, Any] = {"levels": list(LEVELS), "clean": scores(tensors)[0], "inputs": {}}
    for index, (name, cfg) in enumerate(recipe.inputs.items()):
        spec = preprocessing["inputs"][name]["spec"]
        curves: dict[str, list] = {task: [] for task in report["clean"]}
        gated: list[float] = []
        prior: dict[str, list[float]] = {task: [] for task in report["clean"]}
        for level in LEVELS:
            generator = torch.Generator().manual_seed(seed * 1000 + index * 100 + int(level * 10))
            values, shares = scores(corrupt(tensors, name, cfg.modality, spec, level, generator))
            for task, value in values.items():
                curves[task].append(value)
            if TREATED_AS_MISSING in shares:
                gated.append(shares[TREATED_AS_MISSING][name])
            for task, share in shares.get(ANSWERED_BY, {}).items():
                prior[task].append(share)
        missing, missing_shares = scores(without(tensors, name))
        entry = {"missing": missing, "noise": curves,
                 "relative": {t: relative_robustness(c) if None not in c else None for t, c in curves.items()}}
        if gated:
            entry[TREATED_AS_MISSING] = gated
        if ANSWERED_BY in missing_shares:
            entry[ANSWERED_BY] = {"missing": missing_shares[ANSWERED_BY], "noise": prior}
        if reference is not None:
            ref = reference["inputs"].get(name, {}).get("noise", {})
            entry["effective"] = {t: effective_robustness(c, ref[t]) if t in ref and None not in c else None
                                  for t, c in curves.items()}
        report["inputs"][name] = entry
    report["main_metrics"] = {task: head.main_metric for task, head in model.tasks.items()}
    return report


def rows_not_as_usual(model: Any, key: str, name: str, values: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool for one entry (input or task ``name``) of a ``predict_tensors`` report: gate flags as
    they are (rows whose input was dropped); a task's fallback source codes -> rows answered otherwise
    than a row with every input present is (by the fused model, or as ``complete_rows`` decided)."""
    if key != ANSWERED_BY:
        return values
    fallback = model.missing_fallback
    return values != int(fallback.when_complete[fallback.task_names.index(name)])


def plot_robustness(report: dict[str, Any], path: Path) -> Path:
    """One panel per task: main metric vs noise level, a line per input (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report["clean"])
    figure, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for name, entry in report["inputs"].items():
            axis.plot(report["levels"], [np.nan if v is None else v for v in entry["noise"][task]], marker="o", label=name)
        axis.set_title(f"{task} ({report['main_metrics'][task]})")
        axis.set_xlabel("noise level")
        axis.grid(alpha=0.3)
    axes[0][0].legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())
