"""Retrieval metrics from ranked lists: recall@K, median rank, MRR (bundled with mmcli, loaded by path)."""

from typing import Sequence

import datasets
import numpy as np

from mmcli.evaluation.metric_base import BundledMetric
from mmcli.evaluation.metric_base import pair_features


def first_positive_rank(ranked: Sequence[int], positives: Sequence[int]) -> int | None:
    """1-based position of the first positive in ``ranked``; None if no positive is listed."""
    wanted = set(positives)
    return next((i + 1 for i, item in enumerate(ranked) if item in wanted), None)


class Retrieval(BundledMetric):
    """Recall@K, median rank and mean reciprocal rank of the first positive in each ranked list."""

    NAME = "retrieval"
    INPUTS = """
Args:
    predictions: list[list[int]], per query the gallery ids ranked best first (ties are broken by
        this order: the metric does not see scores).
    references: list[list[int]], per query the ids of its positives (several allowed, e.g. the
        other captions of the same image); a hit is the first positive in the ranked list.
    ks: the cut-offs K of recall@K (default 1, 5, 10).
Returns:
    recall@K: fraction of queries whose first positive is within the top K, one key per K;
    median_rank: median 1-based rank of the first positive (len(list) + 1 when none is listed);
    mrr: mean of 1 / rank (0 for a query with no positive in its list).
"""
    FEATURES = pair_features(datasets.Sequence(datasets.Value("int64")), datasets.Sequence(datasets.Value("int64")))

    def _compute(self, predictions, references, ks=(1, 5, 10)):
        found = [first_positive_rank(r, p) for r, p in zip(predictions, references)]
        # A query that missed ranks after its whole list (median) and earns nothing (MRR).
        ranks = np.array([rank if rank is not None else len(r) + 1 for rank, r in zip(found, predictions)])
        hit = np.array([rank is not None for rank in found])
        out = {f"recall@{k}": float(np.mean(hit & (ranks <= k))) for k in ks}
        out["median_rank"] = float(np.median(ranks))
        out["mrr"] = float(np.mean(np.where(hit, 1.0 / ranks, 0.0)))
        return out
