"""Macro mean average precision of multi-label scores: the mean over classes of scikit-learn's average
precision, classes with no positive row left out (their AP is undefined); and each class's AP."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score


def compute(predictions: Sequence[Sequence[float]], references: Sequence[Sequence[int]]) -> dict[str, Any]:
    scores, labels = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.int64)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"predictions {scores.shape} and references {labels.shape} must be equal [rows, classes]")
    # sklearn would warn and score a class with no positive as 0, dragging the mean down.
    per_class = [
        float(average_precision_score(labels[:, c], scores[:, c])) if labels[:, c].any() else math.nan
        for c in range(labels.shape[1])
    ]
    defined = [ap for ap in per_class if not math.isnan(ap)]
    mean = sum(defined) / len(defined) if defined else math.nan
    return {"mean_average_precision": mean, "per_class_ap": per_class}
