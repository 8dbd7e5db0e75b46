"""Corpus chrF through sacrebleu, default settings (bundled with mmcli, loaded by path).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

from typing import Sequence

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = "Corpus chrF (sacrebleu defaults: character 6-grams, no word n-grams, beta 2), in [0, 1]."
_CITATION = "Popovic, 'chrF: character n-gram F-score for automatic MT evaluation', WMT 2015."
_KWARGS = """
Args:
    predictions: list[str], one hypothesis per segment.
    references: list[str] (one reference per segment) or list[list[str]] (one or more references
        per segment; the number may differ between segments).
Returns:
    chrf: float in [0, 1] (sacrebleu's score / 100).
"""


def _features(reference: datasets.Value | datasets.Sequence) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value("string"), "references": reference})


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str | None]]:
    """Per-segment references -> sacrebleu's layout (one stream per reference index, None-padded:
    sacrebleu drops None, its way to give a variable number of references)."""
    rows = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    if any(not row for row in rows):
        raise ValueError("every prediction needs at least one reference")
    width = max(len(row) for row in rows)
    return [[row[i] if i < len(row) else None for row in rows] for i in range(width)]


class Chrf(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=[_features(datasets.Sequence(datasets.Value("string"))), _features(datasets.Value("string"))],
        )

    def _compute(self, predictions, references):
        score = CHRF().corpus_score(list(predictions), reference_streams(references))
        return {"chrf": score.score / 100.0}
