"""Corpus BLEU-4 (bundled with mmcli, loaded by path; computed by mmcli.evaluation.measures.bleu).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from mmcli.evaluation import metric_base


class Bleu(metric_base.TextMeasure):
    """Corpus BLEU-4 (sacrebleu defaults: tokenizer '13a', exponential smoothing), in [0, 1]."""

    CITATION = "Post, 'A Call for Clarity in Reporting BLEU Scores', WMT 2018."
