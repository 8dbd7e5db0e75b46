"""Corpus chrF through sacrebleu, default settings (bundled with mmcli, loaded by path)."""

from sacrebleu.metrics import CHRF

from mmcli.evaluation.metric_base import SacrebleuMetric


class Chrf(SacrebleuMetric):
    """Corpus chrF (sacrebleu defaults: character 6-grams, no word n-grams, beta 2), in [0, 1]."""

    NAME = "chrf"
    CITATION = "Popovic, 'chrF: character n-gram F-score for automatic MT evaluation', WMT 2015."

    def scorer(self) -> CHRF:
        return CHRF()
