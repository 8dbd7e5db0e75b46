"""Mean absolute error between predictions and references (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.mae).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class Mae(metric_base.NumberMeasure):
    """Mean absolute error between predictions and references (original units)."""
