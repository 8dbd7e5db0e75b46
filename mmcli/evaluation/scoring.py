"""Metrics of a model on a split: each objective scores what inference gathered for it, and each
inference wrapper summarises its per-row report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmcli.inference.metrics import objective_metrics
from mmcli.inference.predictor import Inference, run_inference


def wrapper_summaries(model: Any, inference: Inference) -> dict[str, Any]:
    """wrapper key -> its counts over the split (what each inference wrapper did, never silent)."""
    return {wrapper.key: wrapper.summarize(inference.reports.get(name, {})) for name, wrapper in model.wrappers.items()}


def evaluate_splits(model: Any, recipe: Any, datasets: Any, splits: list[str],
                    plots: Path | None = None) -> dict[str, Any]:
    """{split: {objective: {metric: value}, "loss": value, "rows": n, <wrapper key>: counts}} per split;
    with ``plots`` (a folder), a confusion matrix per classification task and split there."""
    from mmcli.data.loader import split_tensors

    device = next(model.parameters()).device
    results: dict[str, Any] = {}
    for split in splits:
        tensors = split_tensors(datasets[split], list(recipe.inputs), list(recipe.tasks))
        inference = run_inference(model, tensors, recipe.training.eval_batch_size, device)
        results[split] = objective_metrics(model, inference, tensors)
        results[split]["loss"] = inference.loss
        results[split]["rows"] = len(tensors["__row__"])
        results[split].update(wrapper_summaries(model, inference))
        if plots is not None:
            confusion_plots(model, inference, tensors, split, plots)
    return results


def confusion_plots(model: Any, inference: Inference, tensors: dict[str, torch.Tensor], split: str, folder: Path) -> list[Path]:
    """``confusion-SPLIT-TASK.png`` for every task with one class per row (``confusion_inputs``) whose labels
    the split has."""
    from mmcli.evaluation.plots import confusion_matrix

    written = []
    for name, task in model.tasks.items():
        if not callable(getattr(task, "confusion_inputs", None)) or name not in tensors \
                or name not in inference.predictions:
            continue
        classes = task.classes
        predicted, true = task.confusion_inputs(inference.predictions[name], tensors[name])
        if true:
            written.append(confusion_matrix(classes, predicted, true, f"{name} ({split} split)",
                                            folder / f"confusion-{split}-{name}.png"))
    return written
