"""Classification task: logits over the spec's classes, cross-entropy, accuracy/F1."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.heads._base import TaskSettings, mlp, zero_loss
from mmcli.registries import TASKS

IGNORE = -100  # target of a row without a label


class ClassificationConfig(TaskSettings):
    type: Literal["classification"] = "classification"
    label_smoothing: float = Field(0.0, ge=0, lt=1)


@TASKS.register("classification", ClassificationConfig)
class ClassificationTask(nn.Module):
    """Spec: ``{"classes": [name, ...]}``. ``forward(fused [B, D]) -> logits [B, C]``; targets int64 ``[B]``, -100 = none."""

    metrics: ClassVar[list[str]] = ["accuracy", "f1"]
    main_metric: ClassVar[str] = "accuracy"
    greater_is_better: ClassVar[bool] = True

    def __init__(self, config: ClassificationConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        self.classes = [str(c) for c in spec["classes"]]
        self.label_smoothing = config.label_smoothing
        self.head = mlp(hidden_size, len(self.classes), config.hidden, config.dropout)

    def forward(self, fused: Tensor) -> Tensor:
        return self.head(fused)

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy over labelled rows: ``logits [B, C]``, ``target [B]`` -> scalar."""
        labelled = target != IGNORE
        if not labelled.any():
            return zero_loss(prediction)
        return F.cross_entropy(prediction[labelled].float(), target[labelled].long(),
                               label_smoothing=self.label_smoothing)

    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy per row ``[B]``, 0 where there is no label."""
        labelled = target != IGNORE
        losses = F.cross_entropy(prediction.float(), target.long().clamp(min=0), reduction="none",
                                 label_smoothing=self.label_smoothing)
        return losses * labelled

    @torch.no_grad()
    def prior(self, target: Tensor) -> Tensor:
        """``[C]`` log class frequencies of ``target``'s labelled rows: the constant prediction with the
        lowest mean cross-entropy, add-one smoothed so that an unseen class keeps some probability
        (uniform without labels)."""
        labelled = target[target != IGNORE].long()
        counts = torch.bincount(labelled, minlength=len(self.classes)).float() + 1.0
        return (counts / counts.sum()).log()

    @staticmethod
    def labelled(target: Tensor) -> Tensor:
        return target != IGNORE

    @staticmethod
    def average(predictions: list[Tensor]) -> Tensor:
        """Logits of the ensemble whose probabilities are the mean of the predictions' probabilities."""
        log_probabilities = torch.stack([p.float().log_softmax(dim=-1) for p in predictions])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(predictions))

    @torch.no_grad()
    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        """``logits [B, C]`` -> per row ``{"label": name, "probabilities": {name: p}}``."""
        probabilities = prediction.float().softmax(dim=-1).cpu().tolist()
        return [
            {"label": self.classes[max(range(len(row)), key=row.__getitem__)],
             "probabilities": dict(zip(self.classes, row))}
            for row in probabilities
        ]

    @torch.no_grad()
    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list[int], list[int]]:
        """Predicted and true class indices (into ``classes``) of the labelled rows."""
        labelled = target != IGNORE
        return prediction[labelled].argmax(dim=-1).cpu().tolist(), target[labelled].cpu().tolist()
