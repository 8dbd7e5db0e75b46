"""What the bundled metric modules (``metrics/NAME/NAME.py``) share: one ``evaluate.Metric`` per kind of
input (numbers, labels, texts), so a module only names its metric, says what it is and scores.

``evaluate`` loads a module by path and lets it import installed packages or files in its own folder
only, so the modules import this one as part of the installed ``mmcli`` package. It also reads a
module's imports with a line regex: a module keeps ONE import per line (``tests/unit/test_metrics.py``).
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from typing import Any, Sequence

import datasets
import evaluate


def pair_features(prediction: Any, reference: Any) -> datasets.Features:
    return datasets.Features({"predictions": prediction, "references": reference})


NUMBERS = pair_features(datasets.Value("float64"), datasets.Value("float64"))
# Class indices or class names: evaluate picks the matching format.
LABELS = [pair_features(datasets.Value(kind), datasets.Value(kind)) for kind in ("int64", "string")]
# Several references per prediction first: a plain string never encodes as a list.
TEXTS = [pair_features(datasets.Value("string"), datasets.Sequence(datasets.Value("string"))),
         pair_features(datasets.Value("string"), datasets.Value("string"))]


class BundledMetric(evaluate.Metric, metaclass=ABCMeta):
    """A metric described by its class docstring, ``CITATION``, ``INPUTS`` (the arguments and results,
    ``{name}`` standing for ``NAME``) and ``FEATURES`` (the accepted input formats). Abstract, so that
    ``evaluate``, which takes the first concrete Metric class in a module's namespace, skips it."""

    NAME = ""
    CITATION = ""
    INPUTS = ""
    FEATURES: Any = NUMBERS

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(description=inspect.getdoc(type(self)) or "", citation=self.CITATION,
                                   inputs_description=self.INPUTS.replace("{name}", self.NAME), features=self.FEATURES)

    @abstractmethod
    def _compute(self, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
        """``{metric name: value, ...}`` for the predictions and their references."""


class ScoreMetric(BundledMetric):
    """``{NAME: score(references, predictions, **options)}``, a scikit-learn style function."""

    @abstractmethod
    def score(self, references: Any, predictions: Any, **options: Any) -> float: ...

    def _compute(self, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
        return {self.NAME: float(self.score(references, predictions, **options))}


class ErrorMetric(ScoreMetric):
    """An error of predicted numbers, in the references' units."""

    INPUTS = """
Args:
    predictions: predicted values.
    references: true values.
Returns:
    {name}: float >= 0.
"""


class LabelMetric(ScoreMetric):
    """A score of predicted labels."""

    FEATURES = LABELS
    INPUTS = """
Args:
    predictions: predicted labels (class indices or class names).
    references: true labels, same type as predictions.
Returns:
    {name}: float in [0, 1].
"""


class TextMetric(BundledMetric):
    """A score of predicted texts against one or more reference texts each."""

    FEATURES = TEXTS
    INPUTS = """
Args:
    predictions: list[str], one hypothesis per segment.
    references: list[str] (one reference per segment) or list[list[str]] (one or more references
        per segment; the number may differ between segments).
Returns:
    {name}: float in [0, 1].
"""


class SacrebleuMetric(TextMetric):
    """A sacrebleu corpus metric (``scorer()``), its score / 100."""

    INPUTS = TextMetric.INPUTS.replace("float in [0, 1].", "float in [0, 1] (sacrebleu's score / 100).")

    @abstractmethod
    def scorer(self) -> Any: ...

    def _compute(self, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
        score = self.scorer().corpus_score(list(predictions), reference_streams(references))
        return {self.NAME: score.score / 100.0}


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
