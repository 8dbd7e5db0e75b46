"""F1 score (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.f1).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class F1(metric_base.LabelMeasure):
    """F1 score (harmonic mean of precision and recall); macro average by default."""

    INPUTS = metric_base.LABEL_INPUTS.replace("Returns:", """    average: sklearn's `average` ("macro", "micro", "weighted", "binary"); default "macro".
    labels: optional list of labels to include.
Returns:""")
