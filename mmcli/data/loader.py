"""Batches from the Arrow cache with no per-row Python work.

A split is converted once to a dict of tensors (one bulk Arrow -> numpy -> torch copy per
column); batches are then index slices of those tensors. At this toolkit's dataset sizes a
split fits in memory many times over; the Arrow files stay memory-mapped on disk.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from mmcli.data.preprocess import ID_COLUMN, ROW_COLUMN, SPLIT_COLUMN, present_column

_LONG_DTYPES = (torch.int8, torch.int16, torch.int32, torch.uint16, torch.uint32)


def split_tensors(dataset: Any, input_names: list[str], task_names: list[str]) -> dict[str, torch.Tensor]:
    """All model-facing columns of one split as tensors; masks already AND-ed with presence."""
    columns = [c for c in dataset.column_names if c not in (ID_COLUMN, SPLIT_COLUMN)]
    table = dataset.with_format("numpy", columns=columns, dtype=None)[:]  # keep uint8/float16 as stored
    tensors: dict[str, torch.Tensor] = {}
    for column, values in table.items():
        array = np.ascontiguousarray(values)
        if array.dtype == object:
            array = np.stack(list(array))
        tensor = torch.from_numpy(array)
        if column in input_names and tensor.dtype in _LONG_DTYPES:
            tensor = tensor.long()
        tensors[column] = tensor
    for name in input_names:
        present = tensors.pop(present_column(name)).bool()
        mask = tensors[f"{name}_mask"].bool()
        tensors[f"{name}_mask"] = mask & present.view(-1, *([1] * (mask.dim() - 1)))
    for name in task_names:
        if name in tensors and tensors[name].dtype == torch.float64:
            tensors[name] = tensors[name].float()
    return tensors


def iterate_batches(tensors: dict[str, torch.Tensor], batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None, drop_last: bool = False,
                    start_batch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Index-slice batches; ``start_batch`` skips batches already seen (resume mid-epoch, same order)."""
    rows = len(tensors[ROW_COLUMN])
    order = torch.randperm(rows, generator=generator) if shuffle else torch.arange(rows)
    stop = rows - rows % batch_size if drop_last and rows >= batch_size else rows
    for start in range(start_batch * batch_size, stop, batch_size):
        index = order[start:start + batch_size]
        yield {name: tensor[index] if shuffle else tensor[start:start + batch_size] for name, tensor in tensors.items()}


def batches_per_epoch(rows: int, batch_size: int, drop_last: bool = False) -> int:
    if drop_last and rows >= batch_size:
        return rows // batch_size
    return -(-rows // batch_size)
