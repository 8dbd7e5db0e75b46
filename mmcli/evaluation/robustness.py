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
from typing import Any, Callable

import numpy as np
import torch

from mmcli.data.corruption import corrupt_rows
from mmcli.runs import atomic_write_bytes

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


def passes(recipe: Any) -> int:
    """How many times :func:`robustness_report` scores the split: clean, then per input each level and missing."""
    return 1 + len(recipe.inputs) * (len(LEVELS) + 1)


def robustness_report(model: Any, recipe: Any, preprocessing: dict, tensors: dict[str, torch.Tensor],
                      batch_size: int, seed: int = 0, reference: dict | None = None,
                      advance: Callable[[int], None] | None = None) -> dict[str, Any]:
    """{input: {"missing": {task: score}, "noise": {task: [score per level]}, "relative": {...}, "effective": {...}}}
    using each task's main metric. Each inference wrapper adds, per input, under its key, the share of
    rows it treated otherwise than a row with every input present, with the input missing and per
    noise level: ``{"missing": {name: share}, "noise": {name: [share per level]}}`` (name: an input for
    the corruption gate's drops, a task for the missing-input fallback's answers). ``advance(1)`` is
    called after each of the ``passes(recipe)`` passes over the split."""
    from mmcli.inference.metrics import objective_metrics
    from mmcli.inference.predictor import run_inference

    device = next(model.parameters()).device

    def scores(data: dict[str, torch.Tensor]) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
        """(main metric per task, {wrapper key: {name: share of unusual rows}})."""
        inference = run_inference(model, data, batch_size, device)
        measured = objective_metrics(model, inference, data)
        if advance is not None:
            advance(1)
        shares = {wrapper.key: {name: round(float(rows.float().mean()), 4)
                                for name, rows in wrapper.unusual_rows(inference.reports.get(key, {})).items()}
                  for key, wrapper in model.wrappers.items()}
        main = {task: measured[task][objective.main_metric] for task, objective in model.tasks.items() if task in measured}
        return main, shares

    report: dict[str, Any] = {"levels": list(LEVELS), "clean": scores(tensors)[0], "inputs": {}}
    for index, (name, cfg) in enumerate(recipe.inputs.items()):
        spec = preprocessing["inputs"][name]["spec"]
        curves: dict[str, list] = {task: [] for task in report["clean"]}
        noisy_shares: dict[str, dict[str, list[float]]] = {}
        for level in LEVELS:
            generator = torch.Generator().manual_seed(seed * 1000 + index * 100 + int(level * 10))
            values, shares = scores(corrupt(tensors, name, cfg.modality, spec, level, generator))
            for task, value in values.items():
                curves[task].append(value)
            for key, per_name in shares.items():
                for item, share in per_name.items():
                    noisy_shares.setdefault(key, {}).setdefault(item, []).append(share)
        missing, missing_shares = scores(without(tensors, name))
        entry = {"missing": missing, "noise": curves,
                 "relative": {t: relative_robustness(c) if None not in c else None for t, c in curves.items()}}
        for key, per_name in missing_shares.items():
            entry[key] = {"missing": per_name, "noise": noisy_shares.get(key, {})}
        if reference is not None:
            ref = reference["inputs"].get(name, {}).get("noise", {})
            entry["effective"] = {t: effective_robustness(c, ref[t]) if t in ref and None not in c else None
                                  for t, c in curves.items()}
        report["inputs"][name] = entry
    report["main_metrics"] = {task: objective.main_metric for task, objective in model.tasks.items()}
    report["wrappers"] = [wrapper.key for wrapper in model.wrappers.values()]
    return report


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
