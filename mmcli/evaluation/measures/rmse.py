"""Root mean squared error, in the references' units."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def compute(predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    error = np.asarray(predictions, dtype=np.float64) - np.asarray(references, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(np.square(error))))}
