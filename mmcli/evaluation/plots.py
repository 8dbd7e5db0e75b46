"""Pictures of a run, written into its ``plots/`` folder as PNG: learning curves (loss and the monitored
metric per epoch, training and validation, the best epoch marked) and a confusion matrix per
classification task and split (counts, rows normalised for the colour)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from mmcli.runs import atomic_write_bytes


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    _pyplot().close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


def learning_curves(history: list[dict[str, Any]], monitor: str, best_epoch: int, path: Path,
                    main_metrics: dict[str, str] | None = None) -> Path:
    """Loss per epoch (training and validation, and each objective's training loss when there are
    several), and validation metrics: the monitored one, or with the loss as monitor each task's main
    metric (``main_metrics``: task -> metric); the best epoch as a dashed line."""
    plt = _pyplot()
    epochs = [record["epoch"] for record in history]
    objective, _, metric = monitor.partition(".")
    shown = {objective: metric} if metric and objective not in ("validation", "train") else dict(main_metrics or {})
    shown = {name: m for name, m in shown.items() if any(m in r.get("validation", {}).get(name, {}) for r in history)}
    figure, axes = plt.subplots(1, 2 if shown else 1, figsize=(11 if shown else 5.5, 4), squeeze=False)
    loss_axis = axes[0][0]
    loss_axis.plot(epochs, [r.get("train_loss") for r in history], marker="o", label="train (total)")
    if any(r.get("validation_loss") is not None for r in history):
        loss_axis.plot(epochs, [r.get("validation_loss") for r in history], marker="o", label="validation")
    per_objective = {name for r in history for name in r.get("train_losses", {})}
    if len(per_objective) > 1:
        for name in sorted(per_objective):
            loss_axis.plot(epochs, [r.get("train_losses", {}).get(name) for r in history], linestyle=":",
                           label=f"train: {name}")
    loss_axis.set(title="loss", xlabel="epoch", ylabel="loss")
    axes_used = [loss_axis]
    if shown:
        metric_axis = axes[0][1]
        for name, name_metric in shown.items():
            values = [r.get("validation", {}).get(name, {}).get(name_metric) for r in history]
            metric_axis.plot(epochs, values, marker="o", label=f"{name} {name_metric}")
        metric_axis.set(title="validation metrics", xlabel="epoch")
        axes_used.append(metric_axis)
    for axis in axes_used:
        if best_epoch:
            axis.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    figure.suptitle(f"learning curves (best checkpoint by {monitor})")
    figure.tight_layout()
    return _save(figure, path)


def confusion_matrix(classes: list[str], predicted: list[int], true: list[int], title: str, path: Path) -> Path:
    """Counts of (true, predicted) class pairs; each row's colour is its share of the true class."""
    plt = _pyplot()
    size = len(classes)
    counts = np.zeros((size, size), dtype=int)
    for t, p in zip(true, predicted):
        counts[t, p] += 1
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(3.5, 0.55 * size + 2)
    figure, axis = plt.subplots(figsize=(side + 1, side))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(size):
        for j in range(size):
            if counts[i, j]:
                axis.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if shares[i, j] > 0.5 else "black")
    axis.set_xticks(range(size), classes, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(size), classes, fontsize=8)
    axis.set(xlabel="predicted", ylabel="true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axis.set_title(f"{title}\naccuracy {accuracy:.3f} on {counts.sum()} rows", fontsize=10)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    figure.tight_layout()
    return _save(figure, path)
