"""What the trainer and its callbacks share during one training: the model, optimizer and data, the
progress record that checkpoints save, and the monitor that picks the best epoch."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmcli.errors import DataError
from mmcli.training.ema import WeightAverage
from mmcli.training.loss_tracker import LossTracker
from mmcli.weighting import COMBINED_LOSS

LOG_EVERY = 25  # steps between reads of the running loss (each read is one host sync)


@dataclass(frozen=True)
class Monitor:
    """What selects the best checkpoint and drives early stopping: ``objective.metric`` on the
    validation split, the weighted validation loss (``objective`` ""), or the training loss when there
    is no validation split. ``label`` is how it is shown and stored."""

    objective: str
    metric: str
    greater: bool
    label: str

    def score(self, record: dict[str, Any]) -> float | None:
        if self.label == "train.loss":
            return record["train_loss"]
        if self.objective:
            return record["validation"][self.objective][self.metric]
        loss = record.get("validation_loss")
        return loss if loss is not None and math.isfinite(loss) else None


def resolve_monitor(recipe: Any, model: Any, has_validation: bool) -> Monitor:
    """``training.monitor`` (``OBJECTIVE[.METRIC]`` or ``loss``); by default the first task's main
    metric, or the validation loss for a recipe without supervised tasks. Directions come from the
    objectives' declared metrics."""
    if not has_validation:
        return Monitor("", COMBINED_LOSS, False, "train.loss")
    wanted = recipe.training.monitor
    if wanted == COMBINED_LOSS or (wanted is None and not model.tasks):
        return Monitor("", COMBINED_LOSS, False, f"validation.{COMBINED_LOSS}")
    name, _, metric = (wanted or next(iter(model.tasks))).partition(".")
    objective = model.objectives[name]
    metric = metric or objective.main_metric
    if metric not in objective.metrics:
        known = ", ".join(objective.metrics) or "none"
        raise DataError(f"training.monitor: objective '{name}' has no metric '{metric}' (known: {known})")
    return Monitor(name, metric, objective.metrics[metric], f"{name}.{metric}")


TIMING_FIELDS = ("seconds", "samples_per_s")  # history fields that measure the machine, not the run


def without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History records without their wall-clock fields: what two identical runs share exactly."""
    return [{key: value for key, value in record.items() if key not in TIMING_FIELDS} for record in history]


def fresh_progress() -> dict[str, Any]:
    """The trainer's position and history; saved in every full checkpoint (JSON)."""
    return {"epoch": 1, "batch": 0, "step": 0, "best_score": None, "best_epoch": 0, "stale": 0, "history": [],
            "skipped_batches": 0, "stopped_early": False}


@dataclass
class TrainingRun:
    """``model`` is the plain module (for saving, validation, inference); ``module`` is what the
    optimizer steps through (the data-parallel wrapper under several processes, else ``model``)."""

    recipe: Any
    model: Any
    module: Any
    optimizer: Any
    scheduler: Any
    accelerator: Any
    train: dict[str, torch.Tensor]
    validation: dict[str, torch.Tensor] | None
    run_dir: Path
    preprocessing: dict | None
    monitor: Monitor
    tracker: LossTracker
    total_steps: int
    epochs: int
    resume: bool = False
    show_progress: bool = True
    state: dict[str, Any] = field(default_factory=fresh_progress)
    resumed_from: str | None = None
    best_info: dict[str, Any] | None = None
    shown_loss: float = math.nan  # the epoch's running loss as of its last read (NaN: not read this epoch)
    last_checkpoint: str | None = None  # the newest full checkpoint this run saved
    epoch_clock: tuple[float, int] = (0.0, 0)  # (perf_counter, step) when this process began the epoch
    epoch_rows: int = 0  # training rows this process's steps took this epoch, over every process (samples/s)
    ema: WeightAverage | None = None  # training.ema: the moving average of the weights
    sharded: bool = False  # training.strategy fsdp: parameters are sharded over the processes
    stop_group: Any = None  # the CPU process group that agrees on a stop (several processes)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    def sync(self) -> float:
        """Check the losses so far (raises on a non-finite one under ``on_nan: fail``) and return this
        epoch's mean training loss on this process (one host sync)."""
        self.tracker.check()
        self.shown_loss = self.tracker.means()["total"]
        return self.shown_loss

    def averaged_weights(self) -> Any:
        """A context with the moving average of the weights in the model (validation, the best
        checkpoint), or nothing without ``training.ema``."""
        return self.ema.applied() if self.ema is not None else nullcontext()

    def gathered_weights(self) -> Any:
        """A context in which every parameter is whole on every process, so that parts of the model may be
        called outside its forward pass (validation, precomputing): under FSDP a collective."""
        if not self.sharded:
            return nullcontext()
        from mmcli.training.sharding import unsharded

        return unsharded(self.model)

    def model_state(self) -> dict[str, torch.Tensor] | None:
        """The full state dict for a checkpoint: gathered from the shards under FSDP (a collective; on the
        main process only, None elsewhere), else the model's own."""
        if not self.sharded:
            return self.model.state_dict() if self.is_main else None
        from mmcli.training.sharding import full_state_dict

        return full_state_dict(self.model)

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a full state dict (every process passes all of it; under FSDP each keeps its shards)."""
        if not self.sharded:
            self.model.load_state_dict(state, strict=False)
            return
        from mmcli.training.sharding import load_full_state_dict

        load_full_state_dict(self.model, state)

    def progress_record(self, rank_losses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """``state`` with the loss sums, as a full checkpoint saves it: this process's (``losses``) and,
        under several processes, every rank's (``rank_losses``, in rank order)."""
        record = {**self.state, "losses": self.tracker.state_dict()}
        if rank_losses and len(rank_losses) > 1:
            record["rank_losses"] = rank_losses
        return record

    def restore(self, progress: dict[str, Any], rank: int = 0) -> None:
        """Continue from a saved progress record, with ``rank``'s own loss sums (none when the checkpoint
        has none for it: it was saved by fewer processes)."""
        progress = dict(progress)
        ranks = progress.pop("rank_losses", None) or [progress["losses"]]
        progress.pop("losses")
        if rank < len(ranks):
            self.tracker.load_state_dict(ranks[rank])
        self.state = progress
