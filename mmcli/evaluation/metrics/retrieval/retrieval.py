"""Retrieval metrics from ranked lists: recall@K, median rank, MRR (bundled with mmcli, loaded by path).

Computed by mmcli.evaluation.measures.retrieval. `evaluate` scans this file's imports with a regex: keep ONE
import per line.
"""

import datasets

from mmcli.evaluation import metric_base


class Retrieval(metric_base.MeasureMetric):
    """Recall@K, median rank and mean reciprocal rank of the first positive in each ranked list."""

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
    FEATURES = metric_base.pair_features(datasets.Sequence(datasets.Value("int64")), datasets.Sequence(datasets.Value("int64")))
