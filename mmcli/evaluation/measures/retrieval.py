"""Retrieval from ranked lists: recall@K, median rank and MRR of the first positive in each list (a query
whose positives are not listed ranks after its whole list and earns no reciprocal rank)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def first_positive_rank(ranked: Sequence[int], positives: Sequence[int]) -> int | None:
    """1-based position of the first positive in ``ranked``; None if no positive is listed."""
    wanted = set(positives)
    return next((i + 1 for i, item in enumerate(ranked) if item in wanted), None)


def compute(predictions: Sequence[Sequence[int]], references: Sequence[Sequence[int]],
            ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    found = [first_positive_rank(r, p) for r, p in zip(predictions, references)]
    # A query that missed ranks after its whole list (median) and earns nothing (MRR).
    ranks = np.array([rank if rank is not None else len(r) + 1 for rank, r in zip(found, predictions)])
    hit = np.array([rank is not None for rank in found])
    out = {f"recall@{k}": float(np.mean(hit & (ranks <= k))) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mrr"] = float(np.mean(np.where(hit, 1.0 / ranks, 0.0)))
    return out
