"""Classification task: logits over the fitted classes, cross-entropy, accuracy/F1."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from mmcli.data.processors.labels import IGNORE_INDEX, ClassificationLabels
from mmcli.objectives._supervised import SupervisedObjective, SupervisedSettings, zero_loss
from mmcli.registries import OBJECTIVES


class ClassificationConfig(SupervisedSettings):
    type: Literal["classification"] = "classification"
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    def target_codec(self, spec: dict | None = None) -> ClassificationLabels:
        return ClassificationLabels.from_spec(spec) if spec is not None else ClassificationLabels()


@OBJECTIVES.register("classification", ClassificationConfig)
class ClassificationObjective(SupervisedObjective):
    """Spec: ``{"classes": [name, ...]}``. Prediction: logits ``[B, C]``; targets int64 ``[B]``, -100 = none."""

    metrics = {"accuracy": True, "f1": True}
    main_metric = "accuracy"

    def configure(self, config: ClassificationConfig, spec: dict) -> None:
        self.classes = [str(c) for c in spec["classes"]]
        self.label_smoothing = config.label_smoothing

    def out_features(self) -> int:
        return len(self.classes)

    def prediction_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy over labelled rows: ``logits [B, C]``, ``target [B]`` -> scalar."""
        labelled = target != IGNORE_INDEX
        if not labelled.any():
            return zero_loss(prediction)
        return F.cross_entropy(prediction[labelled].float(), target[labelled].long(),
                               label_smoothing=self.label_smoothing)

    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        labelled = target != IGNORE_INDEX
        losses = F.cross_entropy(prediction.float(), target.long().clamp(min=0), reduction="none",
                                 label_smoothing=self.label_smoothing)
        return losses * labelled

    @torch.no_grad()
    def prior(self, target: Tensor) -> Tensor:
        """``[C]`` log class frequencies of ``target``'s labelled rows: the constant prediction with the
        lowest mean cross-entropy, add-one smoothed so that an unseen class keeps some probability
        (uniform without labels)."""
        labelled = target[target != IGNORE_INDEX].long()
        counts = torch.bincount(labelled, minlength=len(self.classes)).float() + 1.0
        return (counts / counts.sum()).log()

    @staticmethod
    def labelled(target: Tensor) -> Tensor:
        return target != IGNORE_INDEX

    @staticmethod
    def average(predictions: list[Tensor]) -> Tensor:
        """Logits of the ensemble whose probabilities are the mean of the predictions' probabilities."""
        log_probabilities = torch.stack([p.float().log_softmax(dim=-1) for p in predictions])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(predictions))

    def readout(self, prediction: Tensor) -> Tensor:
        return prediction.float().softmax(dim=-1)

    def readout_labels(self) -> list[str]:
        return self.classes

    @torch.no_grad()
    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        """``logits [B, C]`` -> per row ``{"label": name, "probabilities": {name: p}}``."""
        probabilities = self.readout(prediction).cpu().tolist()
        return [
            {"label": self.classes[max(range(len(row)), key=row.__getitem__)],
             "probabilities": dict(zip(self.classes, row))}
            for row in probabilities
        ]

    @torch.no_grad()
    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list[int], list[int]]:
        """Predicted and true class indices (into ``classes``) of the labelled rows."""
        labelled = target != IGNORE_INDEX
        return prediction[labelled].argmax(dim=-1).cpu().tolist(), target[labelled].cpu().tolist()
