"""What the bundled metric modules (``metrics/NAME/NAME.py``) share: one ``evaluate.Metric`` per kind of
input (numbers, labels, texts), so a module only says what its metric is (the class docstring, a citation).
A metric's name is the one ``evaluate`` gives its class (``RougeL`` -> ``rouge_l``), and its computation
``mmcli.evaluation.measures.NAME.compute``.

``evaluate`` loads a module by path and lets it import installed packages or files in its own folder
only, so the modules import this one as part of the installed ``mmcli`` package. It also reads a
module's imports with a line regex: a module keeps ONE import per line (``tests/unit/test_metrics.py``).
"""

from __future__ import annotations

import inspect
from abc import ABCMeta, abstractmethod
from typing import Any

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
    ``{name}`` standing for its name) and ``FEATURES`` (the accepted input formats). Abstract, so that
    ``evaluate``, which takes the first concrete Metric class in a module's namespace, skips it."""

    CITATION = ""
    INPUTS = ""
    FEATURES: Any = NUMBERS

    @classmethod
    def metric_name(cls) -> str:
        """The name ``evaluate`` gives the metric (``self.name`` once built)."""
        from evaluate.naming import camelcase_to_snakecase

        return camelcase_to_snakecase(cls.__name__)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(description=inspect.getdoc(type(self)) or "", citation=self.CITATION,
                                   inputs_description=self.INPUTS.replace("{name}", self.metric_name()),
                                   features=self.FEATURES)

    @abstractmethod
    def _compute(self, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
        """``{metric name: value, ...}`` for the predictions and their references."""


class MeasureMetric(BundledMetric):
    """A metric whose computation is ``mmcli.evaluation.measures.NAME.compute`` (what mmcli itself calls)."""

    def _compute(self, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
        import importlib

        return importlib.import_module(f"mmcli.evaluation.measures.{self.metric_name()}").compute(
            predictions, references, **options)


NUMBER_INPUTS = """
Args:
    predictions: predicted values.
    references: true values.
Returns:
    {name}: float >= 0.
"""
LABEL_INPUTS = """
Args:
    predictions: predicted labels (class indices or class names).
    references: true labels, same type as predictions.
Returns:
    {name}: float in [0, 1].
"""
TEXT_INPUTS = """
Args:
    predictions: list[str], one hypothesis per segment.
    references: list[str] (one reference per segment) or list[list[str]] (one or more references
        per segment; the number may differ between segments).
Returns:
    {name}: float in [0, 1].
"""


class NumberMeasure(MeasureMetric):
    """Numbers against numbers; a value >= 0."""

    FEATURES = NUMBERS
    INPUTS = NUMBER_INPUTS


class LabelMeasure(MeasureMetric):
    """Labels (indices or names) against labels; a value in [0, 1]."""

    FEATURES = LABELS
    INPUTS = LABEL_INPUTS


class TextMeasure(MeasureMetric):
    """Texts against one or several reference texts each; a value in [0, 1]."""

    FEATURES = TEXTS
    INPUTS = TEXT_INPUTS
