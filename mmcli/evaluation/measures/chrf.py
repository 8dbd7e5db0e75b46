"""Corpus chrF through sacrebleu (character 6-grams, beta 2), in [0, 1]."""

from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import CHRF

from mmcli.evaluation.measures.references import reference_streams


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    return {"chrf": CHRF().corpus_score(list(predictions), reference_streams(references)).score / 100.0}
