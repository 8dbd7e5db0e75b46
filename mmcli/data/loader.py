"""Batches from the Arrow cache with no per-row Python work.

A split is converted once to a dict of tensors (one bulk Arrow -> numpy -> torch copy per
column); a ``DataLoader`` then yields index slices of those tensors, one batch per sampler item.
At this toolkit's dataset sizes a split fits in memory many times over; the Arrow files stay
memory-mapped on disk.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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


def subset_rows(tensors: dict[str, torch.Tensor], fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """A seeded ``fraction`` of a split's rows (at least one), in their original order; all of them at 1."""
    rows = len(tensors[ROW_COLUMN])
    if fraction >= 1 or rows == 0:
        return tensors
    keep = max(1, round(fraction * rows))
    index = torch.randperm(rows, generator=torch.Generator().manual_seed(seed * 7_919 + 17))[:keep].sort().values
    return {name: tensor[index] for name, tensor in tensors.items()}


def shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    """The row order of an epoch depends only on (seed, epoch): a resumed run sees the same batches."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class TensorRows(Dataset):
    """A split's tensors as a map-style dataset indexed by a whole batch at once (an index tensor or
    a slice), so a batch is one gather per column and no per-row Python work."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self.rows = len(tensors[ROW_COLUMN])

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        return {name: tensor[index] for name, tensor in self.tensors.items()}


class ShardedBatchSampler(Sampler):
    """One index per batch for :class:`TensorRows`: global batches of ``batch_size`` rows, in an
    order fixed by ``(seed, epoch)`` when shuffled; under data parallelism each of ``world`` ranks
    takes every ``world``-th row of each global batch (``batch_size`` must be a multiple of ``world``),
    so the ranks see different rows and together exactly the rows one process would.
    ``start`` skips the batches of the epoch already done (resume mid-epoch, same order)."""

    def __init__(self, rows: int, batch_size: int, shuffle: bool, drop_last: bool = False, seed: int = 0,
                 epoch: int = 0, rank: int = 0, world: int = 1, start: int = 0) -> None:
        if batch_size % world:
            raise ValueError(f"a global batch of {batch_size} rows cannot be split over {world} processes")
        self.rows, self.batch_size, self.shuffle, self.drop_last = rows, batch_size, shuffle, drop_last
        self.seed, self.epoch, self.rank, self.world, self.start = seed, epoch, rank, world, start

    def __len__(self) -> int:
        return max(batches_per_epoch(self.rows, self.batch_size, self.drop_last) - self.start, 0)

    def __iter__(self) -> Iterator[torch.Tensor | slice]:
        order = torch.randperm(self.rows, generator=shuffle_generator(self.seed, self.epoch)) if self.shuffle else None
        full = self.rows - self.rows % self.batch_size if self.drop_last and self.rows >= self.batch_size else self.rows
        for begin in range(self.start * self.batch_size, full, self.batch_size):
            end = min(begin + self.batch_size, full)
            if order is not None:
                index = order[begin:end]
                yield index if self.world == 1 else index[self.rank::self.world]
            else:
                yield slice(begin, end) if self.world == 1 else torch.arange(begin, end)[self.rank::self.world]


def _as_is(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return batch


def batch_loader(tensors: dict[str, torch.Tensor], sampler: ShardedBatchSampler, pin_memory: bool = False) -> DataLoader:
    """A ``DataLoader`` whose items are whole batches (the sampler yields one index per batch).

    It gets a generator of its own: a ``DataLoader`` draws a worker seed from its generator each time
    it is iterated, and from the global RNG without one, which would shift every random draw after
    it (dropout masks, modality dropout) and make a run depend on how often it was evaluated."""
    return DataLoader(TensorRows(tensors), sampler=sampler, batch_size=None, collate_fn=_as_is, pin_memory=pin_memory,
                      generator=torch.Generator())


def batches_per_epoch(rows: int, batch_size: int, drop_last: bool = False) -> int:
    if drop_last and rows >= batch_size:
        return rows // batch_size
    return -(-rows // batch_size)
