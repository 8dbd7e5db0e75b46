"""What the bundled metric modules (``metrics/NAME/NAME.py``) share: one ``evaluate.Metric`` per kind of
input (numbers, labels, texts), so a module only names its metric, says what it is and scores.

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


class MeasureMetric(BundledMetric):
    """A metric whose computation is ``mmcli.evaluation.measures.NAME.compute`` (what mmcli itself calls)."""

    def _compute(self, predictions: Any, references: Any, **options: Any) -> dict[str, Any]:
        import importlib

        return importlib.import_module(f"mmcli.evaluation.measures.{self.NAME}").compute(predictions, references,
                                                                                           **options)


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
