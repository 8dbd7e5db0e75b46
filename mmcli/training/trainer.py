"""The trainer: AdamW, warm-up + cosine schedule, validation each epoch, early stopping, on Hugging
Face accelerate (CPU here, GPUs when present, several processes under torchrun: DDP, or FSDP2 with
``training.strategy: fsdp``), with mixed precision, gradient accumulation (:mod:`.step`),
``torch.compile`` and a moving average of the weights (:mod:`.ema`) as the recipe asks. It runs any
model whose ``forward(batch)`` returns ``(total_loss, {objective: loss})`` and knows no particular
objective or feature: batch transforms, checkpoints, progress and whatever happens after training
are callbacks (:mod:`mmcli.training.callbacks`)."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmcli.data.loader import (ROW_COLUMN, ShardedBatchSampler, batch_loader, batches_per_epoch, split_tensors,
                               subset_rows)
from mmcli import interrupts
from mmcli.errors import RecipeError, RuntimeFailure
from mmcli.inference.metrics import objective_metrics
from mmcli.inference.predictor import run_inference
from mmcli.runs import BEST_CHECKPOINT, CHECKPOINTS, atomic_write_jsonl
from mmcli.training.callbacks import Callback, default_callbacks
from mmcli.training.checkpoints import load_weights, recorded_threads
from mmcli.training.distributed import agreed_signal, broadcast, make_accelerator, stop_group
from mmcli.training.ema import WeightAverage
from mmcli.training.loss_tracker import LossTracker
from mmcli.training.optimization import observe_epoch
from mmcli.training.run_state import LOG_EVERY, TrainingRun, resolve_monitor
from mmcli.training.seeding import seed_everything
from mmcli.training.step import train_step
from mmcli.training.threads import apply_threads



@dataclass
class TrainResult:
    monitor: str
    best_score: float | None
    best_epoch: int
    epochs_run: int
    steps: int
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    skipped_batches: int = 0
    resumed_from: str | None = None
    processes: int = 1
    extras: dict[str, Any] = field(default_factory=dict)  # what callbacks report after training (metrics.json)


def train(recipe: Any, model: Any, datasets: Any, run_dir: Path, show_progress: bool = True, resume: bool = False,
          preprocessing: dict | None = None, callbacks: list[Callback] | None = None,
          extra_callbacks: list[Callback] | None = None) -> TrainResult:
    """Train ``model`` on the cached splits; the best checkpoint lands in run_dir/checkpoints/best and
    its weights are in ``model`` on return.

    With ``resume`` the newest complete ``checkpoints/step-N`` is restored (weights, optimizer,
    scheduler, RNG, position in the epoch) and training continues exactly as if never stopped.
    ``callbacks`` default to :func:`mmcli.training.callbacks.default_callbacks`; ``extra_callbacks`` are
    added to them (a user's own: logging, inspection).
    """
    from mmcli.models.parts import check_parts, freeze_parts
    from mmcli.training.optimization import build_optimizer, build_scheduler, parameter_groups

    start = time.perf_counter()
    cfg = recipe.training
    seed_everything(recipe.seed)
    inputs, tasks = list(recipe.inputs), list(recipe.tasks)
    train_tensors = subset_rows(split_tensors(datasets[recipe.data.train_split], inputs, tasks),
                                recipe.data.train_fraction, recipe.seed)
    val_name = recipe.data.validation_split
    val_tensors = split_tensors(datasets[val_name], inputs, tasks) if val_name and val_name in datasets else None
    callbacks = default_callbacks(recipe, preprocessing) if callbacks is None else list(callbacks)
    callbacks = sorted(callbacks + list(extra_callbacks or []), key=lambda callback: callback.order)

    accelerator = make_accelerator(recipe, Path(run_dir))
    world = accelerator.num_processes
    if world > 1:  # each process its own random stream (dropout, batch transforms), as each row has in one process
        seed_everything(recipe.seed + accelerator.process_index)
    if cfg.batch_size % (world * cfg.grad_accum_steps):
        raise RecipeError(f"training.batch_size: the global batch ({cfg.batch_size}) must split evenly over "
                          f"{world} process(es) x {cfg.grad_accum_steps} micro-batch(es)")
    if cfg.strategy == "fsdp":
        _check_sharding(cfg, world)
    rows = len(train_tensors[ROW_COLUMN])
    if not cfg.drop_last and accelerator.num_processes > 1:
        raise RecipeError("training.drop_last: false is for one process (an incomplete last batch cannot be split "
                          "evenly over processes)", hint="keep training.drop_last: true with several processes")
    if not cfg.drop_last and rows % cfg.batch_size == 1:
        raise RecipeError(f"training.drop_last: false would end every epoch with a batch of one row ({rows} rows, "
                          f"batch_size {cfg.batch_size}); BatchNorm cannot train on it",
                          hint="change training.batch_size by one, or keep drop_last: true")
    threads_note = apply_threads(cfg.num_threads, recorded_threads(Path(run_dir) / CHECKPOINTS) if resume else None)
    if threads_note and accelerator.is_main_process:
        print(f"warning: {threads_note}", file=sys.stderr, flush=True)
    steps_per_epoch = batches_per_epoch(rows, cfg.batch_size, drop_last=cfg.drop_last)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    modalities = {name: input_cfg.modality for name, input_cfg in recipe.inputs.items()}
    if cfg.freeze:
        check_parts(cfg.freeze, model, modalities, "training.freeze")
        freeze_parts(model, cfg.freeze, modalities)
    if cfg.learning_rates:
        check_parts(list(cfg.learning_rates), model, modalities, "training.learning_rates")
    if cfg.compile:  # in place: the state dict keeps its names, so checkpoints are the same
        model.compile()
    if cfg.strategy == "fsdp":
        from mmcli.training.sharding import shard_model

        module = model = shard_model(model, accelerator.device)  # before the optimizer: it holds the shards
    optimizer = build_optimizer(parameter_groups(model, cfg, modalities), cfg, fused=cfg.strategy != "fsdp")
    scheduler = build_scheduler(optimizer, cfg, total_steps, steps_per_epoch)
    if cfg.strategy == "fsdp":
        optimizer, scheduler = accelerator.prepare(optimizer, scheduler)
    else:
        module, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
        model = accelerator.unwrap_model(module)
    run = TrainingRun(recipe=recipe, model=model, module=module, optimizer=optimizer, scheduler=scheduler,
                      accelerator=accelerator, train=train_tensors, validation=val_tensors, run_dir=Path(run_dir),
                      preprocessing=preprocessing, monitor=resolve_monitor(recipe, model, val_tensors is not None),
                      tracker=LossTracker(list(model.objectives), accelerator.device, steps_per_epoch),
                      total_steps=total_steps, epochs=math.ceil(total_steps / steps_per_epoch), resume=resume,
                      show_progress=show_progress, ema=WeightAverage(model, cfg.ema.decay) if cfg.ema else None,
                      sharded=cfg.strategy == "fsdp", stop_group=stop_group(accelerator))
    run.state["threads"] = torch.get_num_threads()  # a resumed run trains with them too (restored with the state)
    try:
        for callback in callbacks:
            callback.on_train_begin(run)
        with interrupts.graceful():  # a signal stops training at a step boundary, checkpointed
            _loop(run, callbacks, rows)
        state = run.state
        if run.is_main:
            atomic_write_jsonl(run.run_dir / "history.jsonl", state["history"])
        if state["best_score"] is None:
            raise RuntimeFailure(f"no epoch gave a finite {run.monitor.label}: the model diverged, so there is no "
                                 "best checkpoint", hint="lower training.learning_rate")
        accelerator.wait_for_everyone()  # the main process has written the best checkpoint
        run.best_info = load_weights(run.run_dir / BEST_CHECKPOINT, model, loader=run.load_state)
        extras: dict[str, Any] = {"threads": torch.get_num_threads()}
        if threads_note:
            extras["threads_note"] = threads_note
        with run.gathered_weights():  # calibrations run parts of the model on the main process
            for callback in callbacks:
                extras.update(callback.on_train_end(run) or {})
    finally:
        for callback in callbacks:
            callback.on_close(run)
    return TrainResult(monitor=run.monitor.label, best_score=state["best_score"], best_epoch=state["best_epoch"],
                       epochs_run=len(state["history"]), steps=state["step"], seconds=time.perf_counter() - start,
                       history=state["history"], stopped_early=state["stopped_early"],
                       skipped_batches=state["skipped_batches"], resumed_from=run.resumed_from,
                       processes=run.world_size, extras=extras)


def _check_sharding(cfg: Any, world: int) -> None:
    """What FSDP does not combine with (yet): one process, fp16's gradient scaler, torch.compile."""
    if world == 1:
        raise RecipeError("training.strategy: fsdp shards the model over several processes, and this is one",
                          hint="launch with --num-processes N (or use the default strategy ddp)")
    if cfg.mixed_precision == "fp16":
        raise RecipeError("training.mixed_precision: fp16 is not supported with strategy fsdp (its gradient scaler "
                          "does not handle sharded gradients)", hint="use training.mixed_precision=bf16")
    if cfg.compile:
        raise RecipeError("training.compile is not supported with strategy fsdp", hint="leave training.compile off")


def _loop(run: TrainingRun, callbacks: list[Callback], rows: int) -> None:
    cfg, state = run.recipe.training, run.state
    pin = run.device.type == "cuda"
    while state["epoch"] <= run.epochs and state["step"] < run.total_steps and not state["stopped_early"]:
        run.module.train()
        run.epoch_clock, run.epoch_rows = (time.perf_counter(), state["step"]), 0
        for callback in callbacks:
            callback.on_epoch_begin(run)
        sampler = ShardedBatchSampler(rows, cfg.batch_size, shuffle=True, drop_last=cfg.drop_last, seed=run.recipe.seed,
                                      epoch=state["epoch"], rank=run.accelerator.process_index,
                                      world=run.world_size, start=state["batch"])
        for batch in batch_loader(run.train, sampler, pin_memory=pin):
            if state["step"] >= run.total_steps:
                break
            state["batch"] += 1
            if train_step(run, batch, callbacks):
                state["step"] += 1
                if state["step"] % LOG_EVERY == 0:
                    run.sync()
                for callback in callbacks:
                    callback.on_step_end(run)
            _stop_if_asked(run, callbacks)
        _end_epoch(run, callbacks)
        _stop_if_asked(run, callbacks)


def _stop_if_asked(run: TrainingRun, callbacks: list[Callback]) -> None:
    """After a step: if a signal asked any process to stop, every process lets the callbacks save what
    resuming needs (one checkpoint, the same step everywhere), then stops."""
    signum = agreed_signal(interrupts.requested(), run.accelerator, run.stop_group)
    if signum is None:
        return
    for callback in callbacks:
        callback.on_interrupt(run)
    raise interrupts.Interrupted(signum, {"step": run.state["step"], "epoch": run.state["epoch"],
                                          "checkpoint": run.last_checkpoint})


def _end_epoch(run: TrainingRun, callbacks: list[Callback]) -> None:
    """Validate (main process), keep the best score, decide on early stopping, move to the next epoch."""
    state, cfg = run.state, run.recipe.training
    run.sync()
    means = run.tracker.epoch_means(run.accelerator)
    epoch = state["epoch"]
    record: dict[str, Any] = {"epoch": epoch, "step": state["step"], "train_loss": _finite_or_none(means.pop("total"))}
    record["train_losses"] = {name: _finite_or_none(value) for name, value in means.items()}
    record["loss_weights"] = run.model.weighting.weights()  # effective, as this epoch trained with them
    began, _ = run.epoch_clock
    seconds = time.perf_counter() - began
    # wall-clock figures: the only fields of a record that differ between identical runs (TIMING_FIELDS)
    record["seconds"] = round(seconds, 3)
    record["samples_per_s"] = round(run.epoch_rows / max(seconds, 1e-9), 1)  # rows trained on (a short last batch too)
    if run.validation is not None and (run.is_main or run.sharded):  # sharded: every process gathers the weights
        with run.averaged_weights(), run.gathered_weights():
            if run.is_main:
                evaluated = run_inference(run.model, run.validation, cfg.eval_batch_size, run.device)
                record["validation"] = objective_metrics(run.model, evaluated, run.validation)
                record["validation_loss"] = evaluated.loss
                record["validation_losses"] = evaluated.losses
    record = broadcast(record, run.accelerator)
    score = run.monitor.score(record)
    best = state["best_score"]
    greater = run.monitor.greater
    observe_epoch(run.scheduler, score, greater)
    improved = score is not None and (best is None or (score > best if greater else score < best))
    state["history"].append(record)
    if improved:
        state["best_score"], state["best_epoch"], state["stale"] = float(score), epoch, 0
    else:
        state["stale"] += 1
    if cfg.early_stopping_patience and state["stale"] >= cfg.early_stopping_patience:
        state["stopped_early"] = True
    state.update(epoch=epoch + 1, batch=0)
    run.tracker.reset()
    for callback in callbacks:
        callback.on_epoch_end(run, record, improved)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
