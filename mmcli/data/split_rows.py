"""A cached split read in batches straight from its memory-mapped Arrow files: each model-facing column
is a numpy view over the file (no copy; the operating system pages it in and out), and a batch is one
gather per column. So a split larger than memory trains, and a batch costs what an in-memory gather
costs. Boolean columns (masks, presence) are bit-packed in Arrow: they are unpacked once, a few bytes a
row. A column can also be read whole (``split["scene"]``, for priors or calibration) or set in memory
(``split["image__precomputed"] = tensor``, a frozen tower's outputs)."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch

LONG_DTYPES = (torch.int8, torch.int16, torch.int32, torch.uint16, torch.uint32)


def _present_column(name: str) -> str:
    return f"{name}__present"


def _values(chunk: pa.Array) -> np.ndarray:
    """A chunk of rows of fixed shape as a numpy array ``[rows, *shape]``: a view of the file for numbers,
    a copy for booleans (Arrow packs them in bits)."""
    shape: list[int] = []
    array = chunk
    while True:
        if isinstance(array, pa.ExtensionArray):
            array = array.storage
        elif pa.types.is_fixed_size_list(array.type) or pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
            parents = len(array)
            array = array.flatten()
            shape.append(len(array) // parents if parents else 0)
        else:
            break
    values = _primitive_values(array)
    return values.reshape(len(chunk), *shape)  # shape: items per parent item, level by level


def _primitive_values(array: pa.Array) -> np.ndarray:
    """The values buffer as numpy, read directly: pyarrow's ``to_numpy`` imports pandas (a second of a
    short command). Booleans are bit-packed: unpacked to one byte a value."""
    if array.null_count:
        raise ValueError(f"a cached column of {array.type} has missing values; preprocess fills them")
    data = array.buffers()[1]
    if pa.types.is_boolean(array.type):
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return bits[array.offset:array.offset + len(array)].view(np.bool_)
    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(data, dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize)


class ArrowColumn:
    """One column of a split: its chunks as numpy arrays, gathered by row index."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        chunks = [chunk for chunk in column.chunks if len(chunk)] or [pa.array([], type=column.type)]  # no rows
        self.chunks = [_values(chunk) for chunk in chunks]
        self.starts = np.cumsum([0] + [len(chunk) for chunk in self.chunks])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def take(self, rows: np.ndarray) -> np.ndarray:
        if len(self.chunks) == 1:
            return self.chunks[0][rows]
        which = np.searchsorted(self.starts, rows, side="right") - 1
        first = self.chunks[0]
        out = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
        for index in np.unique(which):
            here = which == index
            out[here] = self.chunks[index][rows[here] - self.starts[index]]
        return out


class SplitRows:
    """``len()`` rows of model-facing columns (the batch format of docs/CONTRACTS.md): inputs' values and
    masks (a mask already AND-ed with the input's presence), targets, ``__row__``. ``batch(index)`` gathers
    rows; ``split[key]`` reads a whole column; ``subset(rows)`` keeps some rows, lazily."""

    def __init__(self, dataset: Any, input_names: list[str], task_names: list[str], skip: tuple[str, ...] = ()) -> None:
        table = dataset.data.table
        indices = getattr(dataset, "_indices", None)  # a selected view of a dataset: its rows in the file
        self.rows = np.asarray(indices.column(0).to_numpy(), dtype=np.int64) if indices is not None else None
        names = [name for name in table.column_names if name not in skip]
        self.columns = {name: ArrowColumn(table.column(name)) for name in names}
        self.inputs, self.tasks = list(input_names), list(task_names)
        self.memory: dict[str, torch.Tensor] = {}


    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(next(iter(self.columns.values())))

    def keys(self) -> list[str]:
        present = {_present_column(name) for name in self.inputs}
        return [key for key in self.columns if key not in present] + [k for k in self.memory if k not in self.columns]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def items(self) -> list[tuple[str, torch.Tensor]]:
        return [(key, self[key]) for key in self.keys()]

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def _file_rows(self, index: np.ndarray) -> np.ndarray:
        return index if self.rows is None else self.rows[index]

    def _columns(self, keys: list[str], index: np.ndarray) -> dict[str, torch.Tensor]:
        rows = self._file_rows(index)
        out: dict[str, torch.Tensor] = {}
        for key in keys:
            if key in self.memory:
                out[key] = self.memory[key][torch.from_numpy(np.asarray(index))]
                continue
            tensor = torch.from_numpy(np.ascontiguousarray(self.columns[key].take(rows)))
            if key in self.inputs and tensor.dtype in LONG_DTYPES:
                tensor = tensor.long()
            elif key in self.tasks and tensor.dtype == torch.float64:
                tensor = tensor.float()
            if key.endswith("_mask") and key[: -len("_mask")] in self.inputs:
                present = torch.from_numpy(self.columns[_present_column(key[: -len("_mask")])].take(rows)).bool()
                tensor = tensor.bool() & present.view(-1, *([1] * (tensor.dim() - 1)))
            out[key] = tensor
        return out

    def batch(self, index: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        """The rows ``index`` (a tensor of positions, or a slice) of every column."""
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        return self._columns(self.keys(), index.numpy().astype(np.int64))

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self:
            raise KeyError(key)
        return self._columns([key], np.arange(len(self)))[key]

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        if len(value) != len(self):
            raise ValueError(f"{key}: {len(value)} rows for a split of {len(self)}")
        self.memory[key] = value

    def subset(self, index: torch.Tensor) -> "SplitRows":
        """The rows ``index`` (positions in this split), read lazily like the split."""
        view = type(self).__new__(type(self))
        view.columns, view.inputs, view.tasks = self.columns, self.inputs, self.tasks
        view.rows = self._file_rows(index.numpy().astype(np.int64))
        view.memory = {key: value[index] for key, value in self.memory.items()}
        return view
