"""Fit label encoders on the train split and encode every row's targets, naming bad rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mmcli.errors import DataError


class TargetEncoder:
    """Wraps a label encoder from ``processors.labels`` with the arrow feature of its column."""

    def __init__(self, task_type: str, encoder: Any) -> None:
        self.task_type = task_type
        self.encoder = encoder

    def spec(self) -> dict:
        return self.encoder.spec()

    def feature(self) -> Any:
        from datasets import Value

        return Value("int64") if self.task_type == "classification" else Value("float32")


def _encoder_class(task_type: str) -> Any:
    from mmcli.data.processors import labels

    classes = {"classification": labels.ClassificationLabels, "regression": labels.RegressionLabels}
    if task_type not in classes:
        raise DataError(f"task type '{task_type}' has no label encoder")
    return classes[task_type]


def fit_targets(recipe: Any, train: pd.DataFrame) -> dict[str, TargetEncoder]:
    targets = {}
    for name, cfg in recipe.tasks.items():
        encoder = _encoder_class(cfg.type)()
        values = train[cfg.column].tolist()
        try:
            encoder.fit(values)
        except (ValueError, TypeError) as error:
            raise DataError(f"tasks.{name}: cannot fit labels from column '{cfg.column}': {error}") from error
        targets[name] = TargetEncoder(cfg.type, encoder)
    return targets


def load_targets(recipe: Any, fitted: dict) -> dict[str, TargetEncoder]:
    return {name: TargetEncoder(cfg.type, _encoder_class(cfg.type).from_spec(fitted["tasks"][name]["spec"]))
            for name, cfg in recipe.tasks.items()}


def encode_targets(recipe: Any, table: pd.DataFrame, targets: dict[str, TargetEncoder],
                   required: bool = True) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Encode every task's column; return arrays and {row: reason} for rows with unusable labels.

    A missing label is allowed (the loss ignores it); a label never seen in train, or a
    regression value that is not a number, is a bad row. With ``required=False`` (predict)
    target columns may be absent.
    """
    encoded: dict[str, np.ndarray] = {}
    errors: dict[int, list[str]] = {}
    for name, cfg in recipe.tasks.items():
        if cfg.column not in table.columns:
            if required:
                raise DataError(f"column '{cfg.column}' (from tasks.{name}.column) is not in the manifest")
            continue
        values, bad = _encode_rows(targets[name], table[cfg.column].tolist())
        encoded[name] = values
        for row, reason in bad.items():
            errors.setdefault(row, []).append(f"{name}: {reason}")
    return encoded, {row: "; ".join(reasons) for row, reasons in errors.items()}


def _encode_rows(target: TargetEncoder, values: list[Any]) -> tuple[np.ndarray, dict[int, str]]:
    """Encode all values at once; on failure, find each bad row so none is dropped silently."""
    from mmcli.data.processors.base import MediaError

    try:
        return target.encoder.encode(values), {}
    except MediaError:
        pass
    fill = -100 if target.task_type == "classification" else float("nan")
    encoded, bad = [], {}
    for row, value in enumerate(values):
        try:
            encoded.append(target.encoder.encode([value])[0])
        except MediaError as error:
            bad[row] = str(error)
            encoded.append(fill)
    return np.asarray(encoded, dtype=np.int64 if target.task_type == "classification" else np.float32), bad
