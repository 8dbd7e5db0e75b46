"""Corpus BLEU-4 through sacrebleu (bundled with mmcli, loaded by path).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from typing import Sequence

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_DESCRIPTION = "Corpus BLEU-4 (sacrebleu defaults: tokenizer '13a', exponential smoothing), in [0, 1]."
_CITATION = "Post, 'A Call for Clarity in Reporting BLEU Scores', WMT 2018."
_KWARGS = """
Args:
    predictions: list[str], one hypothesis per segment.
    references: list[str] (one reference per segment) or list[list[str]] (one or more references
        per segment; the number may differ between segments).
Returns:
    bleu: float in [0, 1] (sacrebleu's score / 100).
"""


def _features(reference: datasets.Value | datasets.Sequence) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value("string"), "references": reference})


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str | None]]:
    """Per-segment references -> sacrebleu's layout: one stream per reference index.

    A segment with fewer references than the most is padded with None, which sacrebleu drops
    (its documented way to give a variable number of references; '' would count as a reference).
    """
    rows = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    if any(not row for row in rows):
        raise ValueError("every prediction needs at least one reference")
    width = max(len(row) for row in rows)
    return [[row[i] if i < len(row) else None for row in rows] for i in range(width)]


class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            # Several references per prediction first: a plain string never encodes as a list.
            features=[_features(datasets.Sequence(datasets.Value("string"))), _features(datasets.Value("string"))],
        )

    def _compute(self, predictions, references):
        score = BLEU(tokenize="13a").corpus_score(list(predictions), reference_streams(references))
        return {"bleu": score.score / 100.0}
