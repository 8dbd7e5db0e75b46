"""Corpus BLEU-4 through sacrebleu (tokenizer '13a', exponential smoothing), in [0, 1]."""

from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import BLEU

from mmcli.evaluation.measures.references import reference_streams


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    return {"bleu": BLEU(tokenize="13a").corpus_score(list(predictions), reference_streams(references)).score / 100.0}
