"""Training losses summed on the device: reading them is one host sync (at a log interval, a
checkpoint or an epoch end), never one per step. The first non-finite step is recorded on the
device too, so ``training.on_nan: fail`` still names the exact step and objective."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from mmcli.errors import RuntimeFailure

TOTAL = "total"


class LossTracker:
    """Per-epoch sums of the total loss and of each objective's loss."""

    def __init__(self, names: list[str], device: torch.device, steps_per_epoch: int) -> None:
        self.names = [TOTAL, *names]
        self.device, self.steps_per_epoch = device, steps_per_epoch
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self._positions: dict[tuple[str, ...], Tensor] = {}
        self.reset()
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad = torch.zeros(len(self.names), dtype=torch.bool, device=device)

    def reset(self) -> None:
        self.sums = torch.zeros(len(self.names), dtype=self.dtype, device=self.device)
        self.counts = [0] * len(self.names)

    def _index(self, present: tuple[str, ...]) -> Tensor:
        # cached: building an index tensor from a list every step would be a host-to-device copy
        if present not in self._positions:
            self._positions[present] = torch.tensor([self.names.index(name) for name in present], device=self.device)
        return self._positions[present]

    def add(self, step: int, total: Tensor, losses: dict[str, Tensor]) -> None:
        present = (TOTAL, *losses)
        values = torch.stack([total.detach(), *(loss.detach() for loss in losses.values())]).to(self.dtype)
        index = self._index(present)
        self.sums.index_add_(0, index, values)
        for name in present:
            self.counts[self.names.index(name)] += 1
        non_finite = ~torch.isfinite(values)
        first = (self.first_bad < 0) & non_finite.any()
        self.first_bad = torch.where(first, torch.full_like(self.first_bad, step), self.first_bad)
        self.bad[index] = torch.where(first, non_finite, self.bad[index])

    def check(self) -> None:
        """Raise for a non-finite loss seen since training began (one host sync)."""
        step = int(self.first_bad)
        if step < 0:
            return
        bad = [name for name, flag in zip(self.names[1:], self.bad[1:].tolist()) if flag] or [TOTAL]
        epoch = math.ceil(step / self.steps_per_epoch)
        raise RuntimeFailure(f"non-finite loss at step {step} (epoch {epoch}, objective {', '.join(bad)})",
                             hint="lower training.learning_rate, check the targets, or set training.on_nan=skip_batch")

    def means(self, sums: list[float] | None = None, counts: list[int] | None = None) -> dict[str, float]:
        """name -> mean loss this epoch (NaN for an objective with no loss yet)."""
        sums = self.sums.tolist() if sums is None else sums
        counts = self.counts if counts is None else counts
        return {name: (total / count if count else math.nan) for name, total, count in zip(self.names, sums, counts)}

    def epoch_means(self, accelerator: Any) -> dict[str, float]:
        """:meth:`means` over every process (one all-reduce under data parallelism)."""
        if accelerator.num_processes == 1:
            return self.means()
        both = torch.cat([self.sums.to(torch.float64), torch.tensor(self.counts, dtype=torch.float64, device=self.device)])
        both = accelerator.reduce(both, reduction="sum").tolist()
        size = len(self.names)
        return self.means(both[:size], [int(c) for c in both[size:]])

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.tolist(), "counts": list(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums = torch.tensor(state["sums"], dtype=self.dtype, device=self.device)
        self.counts = list(state["counts"])
