"""Fraction of predictions equal to the reference (scikit-learn's accuracy_score; numpy here: importing
scikit-learn costs a second per command)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def compute(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    return {"accuracy": float(np.mean(np.asarray(predictions, dtype=object) == np.asarray(references, dtype=object)))}
