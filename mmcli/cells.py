"""Manifest cells as values: what counts as missing, and a label's canonical name. Torch-free, shared by
the input processors (data) and the target codecs (objectives)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_missing(value: Any) -> bool:
    """None, NaN and empty/whitespace strings mean "no value" in a manifest cell."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def label_key(value: Any) -> str | None:
    """A manifest label as a class name; None when missing.

    Integral floats become "3", not "3.0": pandas turns an int column with gaps into floats,
    and the same class must get the same name in every split.
    """
    if is_missing(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer, np.bool_)):
        value = value.item()
    return str(value).strip()


def sort_key(name: str) -> tuple[int, float, str]:
    """Numeric names in numeric order ("2" before "10"), then the others alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)
