"""Fraction of predictions that equal the reference label. (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.accuracy).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class Accuracy(metric_base.LabelMeasure):
    """Fraction of predictions that equal the reference label."""
