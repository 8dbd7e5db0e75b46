"""One optimizer step: the batch in ``training.grad_accum_steps`` micro-batches whose gradients add up
(each process reduces them with the others once, after the last), then clipping, the optimizer, the
schedule and the moving average of the weights.

A step always consumes one whole batch, so checkpoints (and a stop by a signal) land on optimizer-step
boundaries and a resumed run never starts in the middle of an accumulation."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch import Tensor

from mmcli.data.loader import ROW_COLUMN
from mmcli.training.distributed import all_finite

if TYPE_CHECKING:
    from mmcli.training.callbacks.base import Callback
    from mmcli.training.run_state import TrainingRun


def micro_batches(batch: dict[str, Tensor], parts: int) -> list[tuple[dict[str, Tensor], float]]:
    """``batch`` (``B`` rows) as ``parts`` consecutive micro-batches of ``B / parts`` rows (sizes differ by
    at most one row when ``B`` does not divide; empty ones are left out), each with its share of the rows
    (its loss is weighted by it, so the gradients add up to the whole batch's mean)."""
    if parts == 1:
        return [(batch, 1.0)]
    rows = batch[ROW_COLUMN].shape[0]
    bounds = [round(index * rows / parts) for index in range(parts + 1)]
    return [({key: value[start:end] if value.dim() and value.shape[0] == rows else value
              for key, value in batch.items()}, (end - start) / rows)
            for start, end in zip(bounds, bounds[1:]) if end > start]


@contextmanager
def gradient_sync(run: "TrainingRun", last: bool) -> Iterator[None]:
    """Reduce gradients over the processes only in the last micro-batch's backward pass."""
    if last or run.world_size == 1:
        with nullcontext():
            yield
    elif hasattr(run.module, "set_requires_gradient_sync"):  # FSDP2
        run.module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            run.module.set_requires_gradient_sync(True)
    else:
        with run.accelerator.no_sync(run.module):
            yield


def _weighted(values: list[tuple[Tensor, float]]) -> Tensor:
    """The rows' mean from micro-batch means and their shares (the one value itself for one)."""
    if len(values) == 1:
        return values[0][0]
    total = sum(share for _, share in values)
    return torch.stack([value * (share / total) for value, share in values]).sum()


def train_step(run: "TrainingRun", batch: dict[str, Tensor], callbacks: list["Callback"]) -> bool:
    """One optimizer step; False when the batch was skipped (no objective had a loss in a single process,
    or a non-finite loss under ``on_nan: skip_batch``). With several processes, one whose rows gave no loss
    still steps with the others (its gradient is zero), as DDP needs every process in each reduction.
    Batch transforms see each micro-batch."""
    cfg, accelerator = run.recipe.training, run.accelerator
    batch = {key: value.to(run.device, non_blocking=True) for key, value in batch.items()}
    rows = batch[ROW_COLUMN].shape[0]  # known on the host: no sync
    for callback in callbacks:
        callback.on_step_begin(run)
    parts = micro_batches(batch, cfg.grad_accum_steps)
    totals: list[tuple[Tensor, float]] = []
    losses: dict[str, list[tuple[Tensor, float]]] = {}
    run.optimizer.zero_grad(set_to_none=True)
    for index, (micro, share) in enumerate(parts):
        for callback in callbacks:
            micro = callback.transform_batch(micro, run)
        with gradient_sync(run, last=index == len(parts) - 1):
            with accelerator.autocast():
                total, micro_losses = run.module(micro)
            if not micro_losses and run.world_size == 1:
                continue  # nothing to learn from these rows (alone: no step; else: a zero joins the others)
            if cfg.on_nan == "skip_batch" and not all_finite(total, accelerator):
                run.optimizer.zero_grad(set_to_none=True)
                run.state["skipped_batches"] += 1
                return False
            accelerator.backward(total if share == 1.0 else total * share)
        if micro_losses:
            totals.append((total.detach(), share))
        for name, loss in micro_losses.items():
            losses.setdefault(name, []).append((loss.detach(), share))
    if not totals and run.world_size == 1:
        run.state["skipped_batches"] += 1
        return False
    if totals:
        run.tracker.add(run.state["step"] + 1, _weighted(totals), {name: _weighted(v) for name, v in losses.items()})
    for callback in callbacks:
        callback.on_after_backward(run)
    if cfg.grad_clip:
        clip_gradients(run, cfg.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None and not getattr(run.optimizer, "step_was_skipped", False):  # fp16: an overflow skips
        run.ema.update()
    run.epoch_rows += rows * run.world_size
    return True


def clip_gradients(run: "TrainingRun", max_norm: float) -> Any:
    """Clip the gradients' global norm (over every process's shard under FSDP)."""
    if run.sharded:  # DTensor gradients: torch's own clipping reduces the norm over the shards
        return torch.nn.utils.clip_grad_norm_([p for p in run.model.parameters() if p.grad is not None], max_norm)
    return run.accelerator.clip_grad_norm_(run.module.parameters(), max_norm)
