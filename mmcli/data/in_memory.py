"""A few rows decoded straight to tensors with a run's fitted processors, skipping the Arrow files and the
``datasets`` machinery: the single-row path of ``predict`` and ``serve``. The tensors are exactly those the
cache would give (the same processors, the same target codecs, the same batch format)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmcli.data.decode import ERROR_COLUMN, RowDecoder, present_column
from mmcli.data.labels_step import encode_targets, load_targets
from mmcli.data.preprocess import ROW_COLUMN, build_processors

LONG = (np.int8, np.int16, np.int32, np.uint16, np.uint32)


@dataclass
class DecodedRows:
    """``tensors``: the rows that could be read, in the batch format; ``kept``: their positions in the table;
    ``errors``: position -> reason for the others."""

    tensors: dict[str, torch.Tensor]
    kept: list[int]
    errors: dict[int, str]


def decode_in_memory(recipe: Any, table: pd.DataFrame, base_dir: Path, fitted: dict) -> DecodedRows:
    processors = build_processors(recipe, fitted)
    columns = {name: cfg.column for name, cfg in recipe.inputs.items()}
    optional = {name for name, cfg in recipe.inputs.items() if cfg.optional}
    decoder = RowDecoder(processors, columns, optional, base_dir)
    cells = table[sorted(set(columns.values()))].to_dict("records")
    decoded = [decoder.row(row) for row in cells]
    encoded, label_errors = encode_targets(recipe, table, load_targets(recipe, fitted), required=False, labelled=False)
    errors = {row: "; ".join(m for m in (out[ERROR_COLUMN], label_errors.get(row, "")) if m)
              for row, out in enumerate(decoded) if out[ERROR_COLUMN] or row in label_errors}
    kept = [row for row in range(len(decoded)) if row not in errors]
    out: dict[str, torch.Tensor] = {ROW_COLUMN: torch.tensor(kept, dtype=torch.long)}
    for name, processor in processors.items():
        values = {key: [decoded[row][key] for row in kept] for key in processor.decoded_features()}
        if getattr(processor, "transforms", False):
            values = processor.transform(values)
        present = torch.tensor([bool(decoded[row][present_column(name)]) for row in kept], dtype=torch.bool)
        for key, column in values.items():
            array = np.asarray(column) if kept else np.empty((0,))
            tensor = torch.from_numpy(np.ascontiguousarray(array.astype(np.int64) if array.dtype in LONG else array))
            if key == f"{name}_mask":
                tensor = tensor.bool() & present.view(-1, *([1] * (tensor.dim() - 1)))
            out[key] = tensor
    for key, values in encoded.items():
        tensor = torch.from_numpy(np.ascontiguousarray(values[kept]))
        out[key] = tensor.float() if tensor.dtype == torch.float64 else tensor
    return DecodedRows(out, kept, errors)
