"""Multi-label task (event detection): a set of labels per row, one sigmoid per class, binary
cross-entropy; per-class decision thresholds tuned on the validation split after training (saved with
the model); mean average precision, micro/macro F1 and per-class F1. Its target codec turns a set
(``"beep;tone rises"``, a JSON list, or the empty-set word) into a multi-hot row."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from mmcli.cells import is_missing
from mmcli.errors import BadValue
from mmcli.objectives._supervised import HeadSettings, HeadTask, zero_loss
from mmcli.registries import OBJECTIVES


class LabelSets:
    """Label sets <-> float32 multi-hot rows ``[C]`` over the train split's labels (sorted); a row without
    a label is NaN. A label never seen in train is a bad row."""

    dtype = np.float32

    def __init__(self, separator: str = ";", empty: str = "none", classes: list[str] | None = None) -> None:
        self.separator, self.empty = separator, empty
        self.classes = list(classes or [])
        self._index = {name: i for i, name in enumerate(self.classes)}

    @property
    def missing(self) -> np.ndarray:
        return np.full(len(self.classes), np.nan, dtype=np.float32)

    def parse(self, value: Any) -> list[str] | None:
        """A cell as its labels (None: no label). Lists (JSONL, Parquet) and JSON list text are taken as
        they are; other text is split at the separator; the empty-set word is the empty set."""
        if isinstance(value, (list, tuple, np.ndarray)):
            return [str(item).strip() for item in value if str(item).strip()]
        if is_missing(value):
            return None
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                raise BadValue(f"label set {text[:40]!r} is not a JSON list") from None
            return self.parse(items if isinstance(items, list) else [items])
        if text == self.empty:
            return []
        return [part.strip() for part in text.split(self.separator) if part.strip()]

    def fit(self, values: Iterable[Any]) -> "LabelSets":
        names: set[str] = set()
        for value in values:
            try:
                names.update(self.parse(value) or [])
            except BadValue:
                continue  # encode() reports it as a bad row
        self.classes = sorted(names)
        self._index = {name: i for i, name in enumerate(self.classes)}
        return self

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        values = list(values)
        out = np.zeros((len(values), len(self.classes)), dtype=np.float32)
        for row, value in enumerate(values):
            labels = self.parse(value)
            if labels is None:
                out[row] = np.nan
                continue
            for label in labels:
                if label not in self._index:
                    shown = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
                    raise BadValue(f"unknown label {label!r} (not in the train split; known: {shown})")
                out[row, self._index[label]] = 1.0
        return out

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        encoded = np.asarray(encoded, dtype=np.float32)
        return ~np.isnan(encoded).any(axis=1) if encoded.shape[1] else np.ones(len(encoded), dtype=bool)

    def spec(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "separator": self.separator, "empty": self.empty}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "LabelSets":
        return cls(spec.get("separator", ";"), spec.get("empty", "none"), [str(c) for c in spec["classes"]])

    def feature(self) -> Any:
        from datasets import Sequence, Value

        return Sequence(Value("float32"), length=len(self.classes))


class MultilabelConfig(HeadSettings):
    type: Literal["multilabel"] = "multilabel"
    separator: str = Field(";", min_length=1, description="between the labels of one cell ('beep;tone rises')")
    empty: str = Field("none", min_length=1, description="the cell text of a row with no label at all")
    tune_thresholds: bool = Field(True, description="after training, choose each class's decision threshold on the "
                                                    "validation split (best F1); otherwise 0.5")

    def codec_settings(self) -> dict[str, Any]:
        return super().codec_settings() | {"separator": self.separator, "empty": self.empty}

    def target_codec(self, spec: dict | None = None) -> LabelSets:
        return LabelSets.from_spec(spec) if spec is not None else LabelSets(self.separator, self.empty)


@OBJECTIVES.register("multilabel", MultilabelConfig)
class MultilabelObjective(HeadTask):
    """Spec: ``{"classes": [...]}``. Prediction: logits ``[B, C]``; targets float32 multi-hot ``[B, C]``, a
    NaN row = no label. Decision thresholds (a buffer, saved with the model) on probabilities."""

    metrics = {"mean_average_precision": True, "micro_f1": True, "macro_f1": True}
    main_metric = "mean_average_precision"

    def configure(self, config: MultilabelConfig, spec: dict) -> None:
        self.classes = [str(c) for c in spec["classes"]]
        self.tune_thresholds = config.tune_thresholds
        self.register_buffer("thresholds", torch.full((len(self.classes),), 0.5))

    def out_features(self) -> int:
        return len(self.classes)

    @staticmethod
    def labelled(target: Tensor) -> Tensor:
        return ~torch.isnan(target).any(dim=-1)

    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``[B]`` mean binary cross-entropy over the classes, 0 where there is no label."""
        labelled = self.labelled(target)
        losses = F.binary_cross_entropy_with_logits(prediction.float(), torch.nan_to_num(target.float()),
                                                    reduction="none").mean(dim=-1)
        return losses * labelled

    def prediction_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean binary cross-entropy over the labelled rows and every class (no host sync)."""
        labelled = self.labelled(target)
        return self.row_loss(prediction, target).sum() / labelled.sum().clamp(min=1) if len(target) else \
            zero_loss(prediction)

    @torch.no_grad()
    def prior(self, target: Tensor) -> Tensor:
        """``[C]`` log-odds of each class's frequency on the labelled rows (add-one smoothed)."""
        rows = target[self.labelled(target)].float()
        rate = (rows.sum(dim=0) + 1.0) / (len(rows) + 2.0)
        return (rate / (1 - rate)).log()

    @staticmethod
    def average(predictions: list[Tensor]) -> Tensor:
        """Logits of the mean of the predictions' probabilities."""
        probability = torch.stack([p.float().sigmoid() for p in predictions]).mean(dim=0).clamp(1e-7, 1 - 1e-7)
        return (probability / (1 - probability)).log()

    def readout(self, prediction: Tensor) -> Tensor:
        return prediction.float().sigmoid()

    def readout_labels(self) -> list[str]:
        return self.classes

    @torch.no_grad()
    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        """``logits [B, C]`` -> per row ``{"labels": [names above their threshold], "probabilities": {...}}``."""
        probabilities = self.readout(prediction).cpu()
        chosen = probabilities >= self.thresholds.cpu()
        return [{"labels": [name for name, on in zip(self.classes, row) if on],
                 "probabilities": dict(zip(self.classes, values))}
                for row, values in zip(chosen.tolist(), probabilities.tolist())]

    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list, list]:
        labelled = self.labelled(target)
        return self.readout(prediction[labelled]).tolist(), target[labelled].long().tolist()

    def score(self, prediction: Tensor, target: Tensor) -> dict[str, Any]:
        from mmcli.evaluation.metrics_loader import compute_metric_values

        scores, truth = self.metric_inputs(prediction, target)
        if not truth:
            return {"count": 0}
        average = compute_metric_values("mean_average_precision", scores, truth)
        decided = (torch.tensor(scores) >= self.thresholds.cpu()).long()
        counts = _confusion(decided, torch.tensor(truth))
        per_class = {name: _f1(*counts[:, index].tolist()) for index, name in enumerate(self.classes)}
        return {"mean_average_precision": average["mean_average_precision"],
                "micro_f1": _f1(*counts.sum(dim=1).tolist()),
                "macro_f1": float(np.mean(list(per_class.values()))) if per_class else math.nan,
                "per_class_f1": per_class, "thresholds": dict(zip(self.classes, self.thresholds.tolist())),
                "count": len(truth)}

    @torch.no_grad()
    def calibrate(self, prediction: Tensor, target: Tensor) -> dict[str, Any] | None:
        """Each class's threshold: the one with the best F1 on these (validation) rows among the midpoints
        of their sorted probabilities; 0.5 for a class with no positive row."""
        if not self.tune_thresholds:
            return None
        labelled = self.labelled(target)
        probabilities, truth = self.readout(prediction[labelled]).cpu(), target[labelled].cpu()
        chosen = {}
        for index, name in enumerate(self.classes):
            threshold = best_f1_threshold(probabilities[:, index], truth[:, index])
            self.thresholds[index] = threshold
            chosen[name] = threshold
        return {"thresholds": chosen, "rows": int(labelled.sum())}


def best_f1_threshold(probability: Tensor, truth: Tensor) -> float:
    """The threshold (a midpoint between neighbouring distinct probabilities, or 0.5) with the best F1 of
    ``probability >= threshold`` against 0/1 ``truth``; ties go to the threshold nearest 0.5."""
    if not bool((truth > 0).any()):
        return 0.5
    values = torch.unique(probability)
    candidates = torch.cat([torch.tensor([0.5]), (values[1:] + values[:-1]) / 2, values[:1] / 2])
    best, best_score = 0.5, -1.0
    for threshold in candidates.tolist():
        score = _f1(*_confusion((probability >= threshold).long().unsqueeze(1), truth.long().unsqueeze(1))[:, 0].tolist())
        if score > best_score + 1e-12 or (abs(score - best_score) <= 1e-12 and abs(threshold - 0.5) < abs(best - 0.5)):
            best, best_score = threshold, score
    return float(best)


def _confusion(decided: Tensor, truth: Tensor) -> Tensor:
    """``[3, C]``: true positives, false positives and false negatives per class."""
    return torch.stack([(decided & truth).sum(dim=0), (decided & (1 - truth)).sum(dim=0),
                        ((1 - decided) & truth).sum(dim=0)])


def _f1(true_positive: int, false_positive: int, false_negative: int) -> float:
    denominator = 2 * true_positive + false_positive + false_negative
    return 2 * true_positive / denominator if denominator else 0.0
