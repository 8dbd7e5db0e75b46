"""Root mean squared error (bundled with mmcli, loaded by path).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

import math

import datasets
import evaluate
from sklearn.metrics import mean_squared_error

_DESCRIPTION = "Root mean squared error between predictions and references (original units)."
_CITATION = ""
_KWARGS = """
Args:
    predictions: predicted values.
    references: true values.
Returns:
    rmse: float >= 0.
"""


class Rmse(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        return {"rmse": math.sqrt(float(mean_squared_error(references, predictions)))}
