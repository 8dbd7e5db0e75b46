"""Corpus BLEU-4 through sacrebleu (bundled with mmcli, loaded by path)."""

from sacrebleu.metrics import BLEU

from mmcli.evaluation.metric_base import SacrebleuMetric


class Bleu(SacrebleuMetric):
    """Corpus BLEU-4 (sacrebleu defaults: tokenizer '13a', exponential smoothing), in [0, 1]."""

    NAME = "bleu"
    CITATION = "Post, 'A Call for Clarity in Reporting BLEU Scores', WMT 2018."

    def scorer(self) -> BLEU:
        return BLEU(tokenize="13a")
