"""Root mean squared error (bundled with mmcli, loaded by path)."""

from sklearn.metrics import root_mean_squared_error

from mmcli.evaluation.metric_base import ErrorMetric


class Rmse(ErrorMetric):
    """Root mean squared error between predictions and references (original units)."""

    NAME = "rmse"
    score = staticmethod(root_mean_squared_error)
