"""ROUGE-L F-measure (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.rouge_l).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class RougeL(metric_base.TextMeasure):
    """ROUGE-L F-measure (LCS F1 per sentence, best reference, mean over the corpus), in [0, 1]."""

    CITATION = "Lin, 'ROUGE: A Package for Automatic Evaluation of Summaries', ACL workshop 2004."
