"""Corpus chrF (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.chrf).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class Chrf(metric_base.TextMeasure):
    """Corpus chrF (sacrebleu defaults: character 6-grams, no word n-grams, beta 2), in [0, 1]."""

    CITATION = "Popovic, 'chrF: character n-gram F-score for automatic MT evaluation', WMT 2015."
