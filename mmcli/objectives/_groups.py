"""Group ids: rows with the same value of a column share a group, which objectives that compare rows
(contrastive, matching) treat as positives, not negatives (the same caption, the same item)."""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

import numpy as np

from mmcli.cells import label_key


class GroupIds:
    """Nothing to fit: the id is a stable 63-bit hash of the value's text, so it is the same in every
    split and run; missing -> -1."""

    missing = -1
    dtype = np.int64

    def fit(self, values: Iterable[Any]) -> "GroupIds":
        return self

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        out = []
        for value in values:
            key = label_key(value)
            digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest() if key is not None else None
            out.append(-1 if digest is None else int.from_bytes(digest, "little") >> 1)
        return np.asarray(out, dtype=np.int64)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(encoded) >= 0

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
