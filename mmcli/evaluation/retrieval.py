"""Cross-modal retrieval scores over a split: recall@K, median rank and MRR in one direction, with
identical gallery items (the same caption under several images) counted as one entry and identical
queries asked once, so a duplicate never pushes a true match out of the top K."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def content_keys(values: Tensor) -> Tensor:
    """``[N]`` ids equal exactly where rows of ``values [N, ...]`` are equal (e.g. the same token ids)."""
    _, inverse = torch.unique(values.reshape(len(values), -1), dim=0, return_inverse=True)
    return inverse


def ranked_until_first_positive(similarity: Tensor, positives: list[set[int]]) -> list[list[int]]:
    """Per query (row of ``similarity [Q, G]``), the gallery ids best first, cut after its first positive:
    all that recall@K, the rank and MRR need (ties keep gallery order)."""
    order = torch.sort(similarity, dim=1, descending=True, stable=True).indices.tolist()
    lists = []
    for ranked, wanted in zip(order, positives):
        end = next((i + 1 for i, item in enumerate(ranked) if item in wanted), len(ranked))
        lists.append(ranked[:end])
    return lists


def retrieval_metrics(queries: Tensor, gallery: Tensor, query_keys: Tensor, gallery_keys: Tensor, groups: Tensor,
                      ks: list[int]) -> dict[str, Any]:
    """Row ``i`` has a query embedding ``queries[i]`` and a gallery embedding ``gallery[i]`` (normalised,
    ``[N, P]``); rows with equal ``query_keys`` are one query, rows with equal ``gallery_keys`` one gallery
    entry; a query's positives are the gallery entries of every row in a group (``groups [N]``) of one of its
    rows. Returns recall@K, ``median_rank``, ``mrr``, and the ``queries`` and ``gallery`` sizes."""
    from mmcli.evaluation.metrics_loader import compute_metric_values

    query_rows = _first_rows(query_keys)
    gallery_rows = _first_rows(gallery_keys)
    entry_of = {int(key): index for index, key in enumerate(gallery_keys[gallery_rows].tolist())}
    entries_by_group: dict[int, set[int]] = {}
    for group, key in zip(groups.tolist(), gallery_keys.tolist()):
        entries_by_group.setdefault(group, set()).add(entry_of[key])
    groups_by_query: dict[int, set[int]] = {}
    for key, group in zip(query_keys.tolist(), groups.tolist()):
        groups_by_query.setdefault(key, set()).add(group)
    positives = [set().union(*(entries_by_group[g] for g in groups_by_query[key]))
                 for key in query_keys[query_rows].tolist()]
    similarity = queries[query_rows].float() @ gallery[gallery_rows].float().T
    lists = ranked_until_first_positive(similarity, positives)
    scores = compute_metric_values("retrieval", lists, [sorted(p) for p in positives], ks=list(ks))
    return {**scores, "queries": len(query_rows), "gallery": len(gallery_rows)}


def _first_rows(keys: Tensor) -> Tensor:
    """The index of the first row of each distinct key, in row order."""
    seen: dict[int, int] = {}
    for row, key in enumerate(keys.tolist()):
        seen.setdefault(key, row)
    return torch.tensor(sorted(seen.values()), dtype=torch.long)
