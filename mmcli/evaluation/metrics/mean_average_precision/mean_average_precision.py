"""Macro mean average precision for multi-label scores (bundled with mmcli, loaded by path)."""

import math

import datasets
import numpy as np
from sklearn.metrics import average_precision_score

from mmcli.evaluation.metric_base import BundledMetric
from mmcli.evaluation.metric_base import pair_features


class MeanAveragePrecision(BundledMetric):
    """Mean over classes of sklearn's average precision; classes with no positive are left out."""

    NAME = "mean_average_precision"
    INPUTS = """
Args:
    predictions: list[list[float]], per row one score per class (higher = more likely).
    references: list[list[int]], per row the multi-hot 0/1 labels, same width.
Returns:
    mean_average_precision: mean AP over the classes with at least one positive row (NaN if none);
        equals sklearn's average_precision_score(average="macro") when every class has one.
    per_class_ap: list with each class's AP, NaN for a class with no positive (AP undefined).
"""
    # float64, not float32: near-equal scores must not collapse into ties.
    FEATURES = pair_features(datasets.Sequence(datasets.Value("float64")), datasets.Sequence(datasets.Value("int64")))

    def _compute(self, predictions, references):
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
