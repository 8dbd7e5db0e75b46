"""Classification task: logits over the fitted classes, cross-entropy, accuracy/F1; its target codec
(class names <-> indices)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from mmcli.cells import label_key, sort_key
from mmcli.errors import BadValue
from mmcli.objectives._supervised import HeadSettings, HeadTask, zero_loss
from mmcli.registries import OBJECTIVES

IGNORE_INDEX = -100  # what the classification loss skips


class UnknownLabel(BadValue):
    """A label that did not occur in the train split (the model has no class for it)."""

    def __init__(self, value: Any, known: list[str]) -> None:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        super().__init__(f"unknown label {value!r} (not in the train split; known: {shown})")
        self.value = value


class ClassificationLabels:
    """Class names (the train split's labels, numeric names in numeric order) <-> int64 indices; -100 = no label."""

    missing = IGNORE_INDEX
    dtype = np.int64

    def __init__(self, classes: list[str] | None = None) -> None:
        self.classes: list[str] = list(classes or [])
        self._index = {c: i for i, c in enumerate(self.classes)}

    def fit(self, values: Iterable[Any]) -> "ClassificationLabels":
        names = {key for key in map(label_key, values) if key is not None}
        self.classes = sorted(names, key=sort_key)
        self._index = {c: i for i, c in enumerate(self.classes)}
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def encode(self, values: Iterable[Any], unknown: Literal["error", "missing"] = "error") -> np.ndarray:
        """int64 class indices; missing -> -100; unseen -> UnknownLabel, or -100 with unknown="missing"."""
        out = []
        for value in values:
            key = label_key(value)
            if key is None:
                out.append(IGNORE_INDEX)
            elif key in self._index:
                out.append(self._index[key])
            elif unknown == "missing":
                out.append(IGNORE_INDEX)
            else:
                raise UnknownLabel(value, self.classes)
        return np.asarray(out, dtype=np.int64)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(encoded) != IGNORE_INDEX

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.classes[int(i)] for i in indices]

    def spec(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("int64")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ClassificationLabels":
        return cls([str(c) for c in spec["classes"]])


class ClassificationConfig(HeadSettings):
    type: Literal["classification"] = "classification"
    label_smoothing: float = Field(0.0, ge=0, lt=1)

    def target_codec(self, spec: dict | None = None) -> ClassificationLabels:
        return ClassificationLabels.from_spec(spec) if spec is not None else ClassificationLabels()


@OBJECTIVES.register("classification", ClassificationConfig)
class ClassificationObjective(HeadTask):
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
        """``[B]`` loss per row, 0 where there is no label."""
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

    confusion_inputs = metric_inputs  # one class per row: a confusion matrix shows the errors
