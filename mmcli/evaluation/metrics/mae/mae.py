"""Mean absolute error (bundled with mmcli, loaded by path).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

import datasets
import evaluate
from sklearn.metrics import mean_absolute_error

_DESCRIPTION = "Mean absolute error between predictions and references (original units)."
_CITATION = ""
_KWARGS = """
Args:
    predictions: predicted values.
    references: true values.
Returns:
    mae: float >= 0.
"""


class Mae(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        return {"mae": float(mean_absolute_error(references, predictions))}
