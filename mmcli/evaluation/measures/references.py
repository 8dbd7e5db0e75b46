"""References as the text metrics take them: one string, or several, per prediction."""

from __future__ import annotations

from typing import Sequence


def reference_rows(references: Sequence[str | Sequence[str]], required: bool = True) -> list[list[str]]:
    """One list of references per prediction (a plain string is a list of one); ``required``: every
    prediction needs at least one."""
    rows = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    if required and any(not row for row in rows):
        raise ValueError("every prediction needs at least one reference")
    return rows


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str | None]]:
    """Per-prediction references -> sacrebleu's layout: one stream per reference index.

    A prediction with fewer references than the most is padded with None, which sacrebleu drops
    (its documented way to give a variable number of references; '' would count as a reference).
    """
    rows = reference_rows(references)
    width = max(len(row) for row in rows)
    return [[row[i] if i < len(row) else None for row in rows] for i in range(width)]
