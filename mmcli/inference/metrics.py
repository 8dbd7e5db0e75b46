"""Metrics from what inference gathered: each objective scores its own outputs (validation during
training, and evaluate)."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.inference.predictor import Inference


def objective_metrics(model: Any, inference: Inference, tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    """objective -> {metric: value, ...}: every supervised objective whose targets the split has, and
    every other objective that reports metrics."""
    metrics: dict[str, dict] = {}
    for name, objective in model.objectives.items():
        outputs = {"prediction": inference.predictions[name]} if objective.supervised else inference.outputs.get(name, {})
        scored = objective.evaluate(outputs, tensors)
        if scored:
            metrics[name] = scored
    return metrics
