"""Root mean squared error between predictions and references (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.rmse).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class Rmse(metric_base.NumberMeasure):
    """Root mean squared error between predictions and references (original units)."""
