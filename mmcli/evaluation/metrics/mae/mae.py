"""Mean absolute error (bundled with mmcli, loaded by path)."""

from sklearn.metrics import mean_absolute_error

from mmcli.evaluation.metric_base import ErrorMetric


class Mae(ErrorMetric):
    """Mean absolute error between predictions and references (original units)."""

    NAME = "mae"
    score = staticmethod(mean_absolute_error)
