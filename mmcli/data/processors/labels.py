"""Target codecs (not a modality, so not registered): class names <-> indices, and standardised
regression values. A supervised objective names its codec (``target_codec()`` on its settings);
preprocess fits it on the train split and encodes every row. Spec formats follow docs/CONTRACTS.md.

A codec has ``fit(values)``, ``encode(values) -> np.ndarray`` (raises ``MediaError`` for a bad
value), ``spec()`` / ``from_spec(spec)``, ``feature()`` (the Arrow column type), ``dtype`` (of the encoded
array) and ``missing`` (the encoded value of a row without a label, which the loss skips)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal

import numpy as np

from mmcli.data.processors.base import MediaError, is_missing

IGNORE_INDEX = -100  # what the classification loss skips


class UnknownLabel(MediaError):
    """A label that did not occur in the train split (the model has no class for it)."""

    def __init__(self, value: Any, known: list[str]) -> None:
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        super().__init__(f"unknown label {value!r} (not in the train split; known: {shown})")
        self.value = value


def label_key(value: Any) -> str | None:
    """A manifest label as a class name; None when missing.

    Integral floats become "3", not "3.0": pandas turns an int column with gaps into floats,
    and the same class must get the same name in every split.
    """
    if is_missing(value):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer, np.bool_)):
        value = value.item()
    return str(value).strip()


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)  # numeric labels in numeric order ("2" before "10")
    except ValueError:
        return (1, 0.0, name)


class ClassificationLabels:
    missing = IGNORE_INDEX
    dtype = np.int64

    def __init__(self, classes: list[str] | None = None) -> None:
        self.classes: list[str] = list(classes or [])
        self._index = {c: i for i, c in enumerate(self.classes)}

    def fit(self, values: Iterable[Any]) -> "ClassificationLabels":
        names = {key for key in map(label_key, values) if key is not None}
        self.classes = sorted(names, key=_sort_key)
        self._index = {c: i for i, c in enumerate(self.classes)}
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def encode(self, values: Iterable[Any], unknown: Literal["error", "missing"] = "error") -> np.ndarray:
        """int64 class indices; missing -> -100; unseen -> UnknownLabel, or -100 with unknown="missing"."""
        out = []
        for value in values:
            key = label_key(value)
            if key is None:
                out.append(IGNORE_INDEX)
            elif key in self._index:
                out.append(self._index[key])
            elif unknown == "missing":
                out.append(IGNORE_INDEX)
            else:
                raise UnknownLabel(value, self.classes)
        return np.asarray(out, dtype=np.int64)

    def decode(self, indices: Iterable[int]) -> list[str]:
        return [self.classes[int(i)] for i in indices]

    def spec(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("int64")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ClassificationLabels":
        return cls([str(c) for c in spec["classes"]])


def _as_float(value: Any) -> float:
    if is_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        raise MediaError(f"regression target is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MediaError(f"regression target is not a number: {value!r}") from None
    return number if math.isfinite(number) else math.nan


def _as_float_or_nan(value: Any) -> float:
    try:
        return _as_float(value)
    except MediaError:
        return math.nan


class RegressionLabels:
    missing = math.nan
    dtype = np.float32

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = float(mean)
        self.std = float(std)

    def fit(self, values: Iterable[Any]) -> "RegressionLabels":
        # A value that is not a number is a bad row: encode() reports it (fail or skip); fit ignores it.
        data = np.asarray([_as_float_or_nan(v) for v in values], dtype=np.float64)
        data = data[np.isfinite(data)]
        self.mean = float(data.mean()) if data.size else 0.0
        std = float(data.std()) if data.size else 0.0
        self.std = std if std > 1e-12 else 1.0  # a constant target must not divide by zero
        return self

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        """float32 ``(y - mean) / std``; missing or non-finite -> NaN."""
        data = np.asarray([_as_float(v) for v in values], dtype=np.float64)
        return ((data - self.mean) / self.std).astype(np.float32)

    def decode(self, values: Any) -> np.ndarray:
        """Standardised values back to original units (float64)."""
        return np.asarray(values, dtype=np.float64) * self.std + self.mean

    def spec(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("float32")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "RegressionLabels":
        return cls(spec["mean"], spec["std"])


class GroupIds:
    """Rows with the same value of a column share a group (for objectives that treat such rows as
    positives, not negatives: the same caption, the same item). Nothing to fit: the id is a stable
    63-bit hash of the value's text, so it is the same in every split and run; missing -> -1."""

    missing = -1
    dtype = np.int64

    def fit(self, values: Iterable[Any]) -> "GroupIds":
        return self

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        import hashlib

        out = []
        for value in values:
            key = label_key(value)
            digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest() if key is not None else None
            out.append(-1 if digest is None else int.from_bytes(digest, "little") >> 1)
        return np.asarray(out, dtype=np.int64)

    def spec(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "GroupIds":
        return cls()

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("int64")


class GroupColumn:
    """The group-id column an objective asks preprocess for (``target_columns`` on its settings)."""

    type = "group"

    def __init__(self, column: str) -> None:
        self.column = column

    def target_codec(self, spec: dict | None = None) -> GroupIds:
        return GroupIds()
