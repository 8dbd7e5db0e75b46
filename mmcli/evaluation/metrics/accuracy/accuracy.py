"""Accuracy: the fraction of predictions equal to the reference (bundled with mmcli, loaded by path)."""

from sklearn.metrics import accuracy_score

from mmcli.evaluation.metric_base import LabelMetric


class Accuracy(LabelMetric):
    """Fraction of predictions that equal the reference label."""

    NAME = "accuracy"
    score = staticmethod(accuracy_score)
