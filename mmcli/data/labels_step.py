"""Fit each supervised objective's target codec on the train split and encode every row's targets,
naming bad rows. The codec comes from the objective's settings (``target_codec()``), so a new task
type brings its own target encoding without an edit here."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mmcli.errors import BadValue, DataError


def target_columns(recipe: Any) -> dict[str, tuple[str, Any]]:
    """batch key -> (recipe key, column settings) for every column a codec encodes: each task's target
    (key: the task's name) and the columns objectives ask for (``target_columns(name)`` on their
    settings, e.g. a contrastive objective's group ids). Column settings have ``column``, ``type`` and
    ``target_codec(spec=None)``."""
    columns = {}
    for section, configs in (("tasks", recipe.tasks), ("objectives", recipe.objectives)):
        for name, cfg in configs.items():
            if section == "tasks":
                columns[name] = (f"tasks.{name}", cfg)
            for key, column in cfg.target_columns(name).items():
                columns[key] = (f"{section}.{name}", column)
    return columns


def fit_targets(recipe: Any, train: pd.DataFrame) -> dict[str, Any]:
    """batch key -> fitted codec, fitted on the train rows of its column (and of the columns its settings'
    ``fit_columns()`` add, e.g. a vocabulary both stages of a recipe share)."""
    targets = {}
    for key, (where, cfg) in target_columns(recipe).items():
        codec = cfg.target_codec()
        columns = cfg.fit_columns() if callable(getattr(cfg, "fit_columns", None)) else [cfg.column]
        missing = [column for column in columns if column not in train.columns]
        if missing:
            raise DataError(f"{where}: column '{missing[0]}' is not in the manifest")
        try:
            codec.fit([value for column in columns for value in train[column].tolist()])
        except (ValueError, TypeError) as error:
            raise DataError(f"{where}: cannot fit labels from column '{cfg.column}': {error}") from error
        targets[key] = codec
    return targets


def load_targets(recipe: Any, fitted: dict) -> dict[str, Any]:
    """batch key -> codec restored from a run's preprocessing.json (never refitted)."""
    return {key: cfg.target_codec(fitted["tasks"].get(key, {}).get("spec", {}))
            for key, (_, cfg) in target_columns(recipe).items()}


def encode_targets(recipe: Any, table: pd.DataFrame, targets: dict[str, Any], required: bool = True,
                   labelled: bool = True) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Encode every task's column; return arrays (first axis: rows) and {row: reason} for rows with
    unusable labels.

    A value the codec cannot use (a label never seen in train, a regression value that is not a number,
    an empty caption) is a bad row; so is an empty or null label where ``labelled`` (training, evaluation),
    unless the task says
    ``allow_missing: true`` (its loss and metrics then skip such rows, and evaluation counts them).
    With ``required=False`` (predict) target columns may be absent.
    """
    encoded: dict[str, np.ndarray] = {}
    errors: dict[int, list[str]] = {}
    for key, (where, cfg) in target_columns(recipe).items():
        if cfg.column not in table.columns:
            if required:
                raise DataError(f"column '{cfg.column}' (from {where}) is not in the manifest")
            continue
        cells = table[cfg.column].tolist()
        values, bad = _encode_rows(targets[key], cells)
        encoded[key] = values
        if callable(getattr(cfg, "row_errors", None)):  # what a value alone cannot tell (a medium it names is absent)
            for row, reason in cfg.row_errors(recipe, table).items():
                bad.setdefault(row, reason)
        if labelled and not getattr(cfg, "allow_missing", True):
            for row in np.flatnonzero(~targets[key].labelled(values)).tolist():
                if row not in bad:  # empty, null, or (regression) not finite
                    bad[row] = (f"no usable label in column '{cfg.column}': {cells[row]!r} "
                                f"(set {where}.allow_missing: true if rows may lack one)")
        for row, reason in bad.items():
            errors.setdefault(row, []).append(f"{key}: {reason}")
    return encoded, {row: "; ".join(reasons) for row, reasons in errors.items()}


def _encode_rows(codec: Any, values: list[Any]) -> tuple[np.ndarray, dict[int, str]]:
    """Encode all values at once; on failure, find each bad row so none is dropped silently."""
    try:
        return codec.encode(values), {}
    except BadValue:
        pass
    encoded, bad = [], {}
    for row, value in enumerate(values):
        try:
            encoded.append(codec.encode([value])[0])
        except BadValue as error:
            bad[row] = str(error)
            encoded.append(codec.missing)  # one row's value: an array for codecs of sequences or sets
    return np.asarray(encoded, dtype=codec.dtype), bad
