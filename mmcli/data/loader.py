"""Batches from the Arrow cache with no per-row Python work.

A split is read where it lies, memory-mapped (:class:`mmcli.data.split_rows.SplitRows`): a ``DataLoader``
yields one batch per sampler item, one gather per column, so a split larger than memory trains and
nothing loads a whole split. A plain dict of tensors (tests, a few rows built in memory) works the same.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mmcli.data.columns import ID_COLUMN, ROW_COLUMN, SPLIT_COLUMN
from mmcli.data.split_rows import SplitRows



def split_tensors(dataset: Any, input_names: list[str], task_names: list[str]) -> SplitRows:
    """All model-facing columns of one split, read from its memory-mapped files a batch at a time; masks
    AND-ed with presence (see :class:`SplitRows`)."""
    return SplitRows(dataset, input_names, task_names, skip=(ID_COLUMN, SPLIT_COLUMN))


def subset_rows(tensors: dict[str, torch.Tensor], fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """A seeded ``fraction`` of a split's rows (at least one), in their original order; all of them at 1."""
    rows = len(tensors[ROW_COLUMN]) if isinstance(tensors, dict) else len(tensors)
    if fraction >= 1 or rows == 0:
        return tensors
    keep = max(1, round(fraction * rows))
    index = torch.randperm(rows, generator=torch.Generator().manual_seed(seed * 7_919 + 17))[:keep].sort().values
    if isinstance(tensors, SplitRows):
        return tensors.subset(index)
    return {name: tensor[index] for name, tensor in tensors.items()}


def shuffle_generator(seed: int, epoch: int) -> torch.Generator:
    """The row order of an epoch depends only on (seed, epoch): a resumed run sees the same batches."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class TensorRows(Dataset):
    """A split (:class:`SplitRows`, or a dict of tensors) as a map-style dataset indexed by a whole batch
    at once (an index tensor or a slice), so a batch is one gather per column and no per-row Python work."""

    def __init__(self, tensors: SplitRows | dict[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self.rows = len(tensors) if isinstance(tensors, SplitRows) else len(tensors[ROW_COLUMN])

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: torch.Tensor | slice) -> dict[str, torch.Tensor]:
        if isinstance(self.tensors, SplitRows):
            return self.tensors.batch(index)
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
