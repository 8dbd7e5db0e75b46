"""Accuracy: the fraction of predictions equal to the reference (bundled with mmcli, loaded by path).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = "Fraction of predictions that equal the reference label."
_CITATION = ""
_KWARGS = """
Args:
    predictions: predicted labels (class indices or class names).
    references: true labels, same type as predictions.
Returns:
    accuracy: float in [0, 1].
"""


def _features(kind: str) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)})


class Accuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            # Class indices or class names: evaluate picks the matching format.
            features=[_features("int64"), _features("string")],
        )

    def _compute(self, predictions, references):
        return {"accuracy": float(accuracy_score(references, predictions))}
