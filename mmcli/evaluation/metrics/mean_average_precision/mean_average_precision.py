"""Macro mean average precision for multi-label scores (bundled with mmcli, loaded by path).

Computed by mmcli.evaluation.measures.mean_average_precision. `evaluate` scans this file's imports with a regex: keep ONE
import per line.
"""

import datasets

from mmcli.evaluation import metric_base


class MeanAveragePrecision(metric_base.MeasureMetric):
    """Mean over classes of sklearn's average precision; classes with no positive are left out."""

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
    FEATURES = metric_base.pair_features(datasets.Sequence(datasets.Value("float64")), datasets.Sequence(datasets.Value("int64")))
