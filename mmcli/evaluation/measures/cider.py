"""CIDEr-D as computed by the coco-caption reference code.

A re-implementation of pycocoevalcap's ``cider_scorer.py`` (not a dependency: 100+ MB with Java
jars). Tokenisation stands in for coco-caption's Java PTBTokenizer: lowercase, every character
that is neither a word character nor whitespace becomes a space, split on whitespace. Unlike PTB
it splits contractions as "don t" (PTB: "do n't") and splits hyphenated words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

from mmcli.evaluation.measures.references import reference_rows


N = 4
SIGMA = 6.0
_NOT_WORD = re.compile(r"[^\w\s]")


def tokenize(text: str) -> list[str]:
    return _NOT_WORD.sub(" ", text.lower()).split()


def ngram_counts(words: list[str]) -> Counter:
    return Counter(tuple(words[i : i + k]) for k in range(1, N + 1) for i in range(len(words) - k + 1))


def _vector(counts: Counter, df: Counter, log_images: float) -> tuple[list[dict], list[float], int]:
    """tf-idf weights and norm per n-gram order, and the caption 'length'."""
    vec: list[dict] = [{} for _ in range(N)]
    for gram, tf in counts.items():
        # An n-gram absent from every reference gets df 1 (coco-caption's max(1, df)).
        vec[len(gram) - 1][gram] = tf * (log_images - math.log(max(1.0, df[gram])))
    norms = [math.sqrt(sum(w * w for w in v.values())) for v in vec]
    # coco-caption counts the bigrams (words - 1), as here; the length difference equals the word
    # count difference unless a side is empty, and an empty side scores 0 anyway.
    length = sum(tf for gram, tf in counts.items() if len(gram) == 2)
    return vec, norms, length


def _similarity(hyp: tuple, ref: tuple) -> float:
    """Mean over n of the clipped cosine, times the Gaussian length penalty."""
    (vh, nh, lh), (vr, nr, lr) = hyp, ref
    penalty = math.exp(-((lh - lr) ** 2) / (2 * SIGMA**2))
    total = 0.0
    for n in range(N):
        # CIDEr-D clipping: min(hyp, ref) * ref instead of hyp * ref.
        dot = sum(min(w, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, w in vh[n].items())
        if nh[n] != 0 and nr[n] != 0:
            dot /= nh[n] * nr[n]
        total += dot * penalty
    return total / N


def cider_d(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """CIDEr-D of each prediction; document frequencies come from this set's references."""
    refs = [[ngram_counts(tokenize(r)) for r in row] for row in references]
    hyps = [ngram_counts(tokenize(p)) for p in predictions]
    # df: in how many images' reference sets an n-gram occurs.
    df: Counter = Counter(gram for row in refs for gram in set().union(*row))
    log_images = math.log(len(refs))
    scores = []
    for hyp, row in zip(hyps, refs):
        h = _vector(hyp, df, log_images)
        scores.append(10.0 * sum(_similarity(h, _vector(r, df, log_images)) for r in row) / len(row))
    return scores


def compute(predictions: Sequence[str], references: Sequence[str | Sequence[str]]) -> dict[str, float]:
    scores = cider_d(list(predictions), reference_rows(references))
    return {"cider": sum(scores) / len(scores)}
