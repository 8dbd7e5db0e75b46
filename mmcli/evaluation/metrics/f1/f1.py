"""F1 score, macro-averaged over classes by default (bundled with mmcli, loaded by path).

`evaluate` scans this file's imports with a regex: keep ONE import per line.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = "F1 score (harmonic mean of precision and recall); macro average by default."
_CITATION = ""
_KWARGS = """
Args:
    predictions: predicted labels (class indices or class names).
    references: true labels, same type as predictions.
    average: sklearn's `average` ("macro", "micro", "weighted", "binary"); default "macro".
    labels: optional list of labels to include.
Returns:
    f1: float in [0, 1]; classes with no predicted or true samples count as 0.
"""


def _features(kind: str) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)})


class F1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=[_features("int64"), _features("string")],
        )

    def _compute(self, predictions, references, average="macro", labels=None):
        score = f1_score(references, predictions, average=average, labels=labels, zero_division=0)
        return {"f1": float(score)}
