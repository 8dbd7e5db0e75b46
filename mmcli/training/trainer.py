"""The trainer: AdamW, warm-up + cosine schedule, validation each epoch, early stopping, best
checkpoint, full checkpoints for exact resume, on Hugging Face accelerate (CPU here, GPU when present)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmcli.data.loader import batches_per_epoch, iterate_batches, split_tensors
from mmcli.errors import DataError, RecipeError, RuntimeFailure
from mmcli.evaluation.predictions import predict_tensors, task_metrics
from mmcli.models.corruption_gate import add_corrupted_copies
from mmcli.progress import TrainingProgress
from mmcli.recipe.schema import COMBINED_LOSS
from mmcli.runs import BEST_CHECKPOINT, atomic_write_json, atomic_write_jsonl
from mmcli.training.modality_dropout import drop_modalities
from mmcli.training.modality_noise import corrupt_modalities
from mmcli.training.checkpoint import load_weights, save_checkpoint
from mmcli.training.fallback_calibration import MISSING_FALLBACK_FILE, calibrate_missing_fallback
from mmcli.training.seeding import epoch_generator, seed_everything
from mmcli.training.state import list_checkpoints, load_training_state, save_training_state

CHECKPOINTS = "checkpoints"


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
    missing_fallback: dict[str, Any] | None = None  # measurements behind model.missing_fallback's decisions


def make_accelerator(recipe: Any) -> Any:
    from accelerate import Accelerator

    wants_cpu = recipe.training.device == "cpu" or not torch.cuda.is_available()
    if recipe.training.device == "cuda" and not torch.cuda.is_available():
        raise DataError("training.device: cuda was asked for but no GPU is visible", hint="use training.device=auto")
    return Accelerator(cpu=wants_cpu, mixed_precision=recipe.training.mixed_precision)


def monitor_of(recipe: Any, model: Any) -> tuple[str, str, bool]:
    """(task, metric, greater_is_better) used to select the best checkpoint; task is "" for the
    weighted validation loss of all tasks."""
    if recipe.training.monitor == COMBINED_LOSS:
        return "", COMBINED_LOSS, False
    if recipe.training.monitor:
        task, _, metric = recipe.training.monitor.partition(".")
        head = model.tasks[task]
        metric = metric or head.main_metric
        if metric not in head.metrics:
            raise DataError(f"training.monitor: task '{task}' has no metric '{metric}' (known: {', '.join(head.metrics)})")
        greater = head.greater_is_better if metric == head.main_metric else metric not in ("mae", "rmse")
        return task, metric, greater
    task = next(iter(recipe.tasks))
    head = model.tasks[task]
    return task, head.main_metric, head.greater_is_better


def _fresh_progress() -> dict[str, Any]:
    return {"epoch": 1, "batch": 0, "step": 0, "best_score": None, "best_epoch": 0, "stale": 0, "history": [],
            "skipped_batches": 0, "epoch_loss": 0.0, "epoch_batches": 0, "stopped_early": False}


def train(recipe: Any, model: Any, datasets: Any, run_dir: Path, show_progress: bool = True,
          resume: bool = False, preprocessing: dict | None = None) -> TrainResult:
    """Train ``model`` on the cached splits; the best checkpoint lands in run_dir/checkpoints/best.

    With ``resume`` the newest complete ``checkpoints/step-N`` is restored (weights, optimizer,
    scheduler, RNG, position in the epoch) and training continues exactly as if never stopped.
    """
    from transformers.optimization import get_cosine_schedule_with_warmup

    start = time.perf_counter()
    cfg = recipe.training
    seed_everything(recipe.seed)
    inputs, tasks = list(recipe.inputs), list(recipe.tasks)
    train_tensors = split_tensors(datasets[recipe.data.train_split], inputs, tasks)
    val_name = recipe.data.validation_split
    val_tensors = split_tensors(datasets[val_name], inputs, tasks) if val_name and val_name in datasets else None
    if getattr(model, "missing_fallback", None) is not None and val_tensors is None:
        raise RecipeError("model.missing_fallback: needs a validation split to measure what answers each task best "
                          "with an input missing (data.validation_split names none that has rows)",
                          hint="add validation rows to the manifest, or remove model.missing_fallback")

    accelerator = make_accelerator(recipe)
    steps_per_epoch = batches_per_epoch(len(train_tensors["__row__"]), cfg.batch_size, drop_last=True)
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    device = accelerator.device
    unwrapped = accelerator.unwrap_model(model)
    task, metric, greater = monitor_of(recipe, unwrapped)
    monitor = (f"{task}.{metric}" if task else f"validation.{metric}") if val_tensors is not None else "train.loss"

    noise_inputs = _noise_inputs(recipe, preprocessing)
    folder = run_dir / CHECKPOINTS
    state, resumed_from = _fresh_progress(), None
    if resume and list_checkpoints(folder):
        latest = list_checkpoints(folder)[-1]
        state, resumed_from = load_training_state(latest, unwrapped, optimizer, scheduler), str(latest)

    def checkpoint() -> None:
        save_training_state(folder, state["step"], unwrapped, optimizer, scheduler, state, cfg.keep_checkpoints)

    with TrainingProgress(total_steps, enabled=show_progress, completed=state["step"]) as progress:
        while state["epoch"] <= epochs and state["step"] < total_steps and not state["stopped_early"]:
            epoch = state["epoch"]
            model.train()
            for batch in iterate_batches(train_tensors, cfg.batch_size, shuffle=True, drop_last=True,
                                         generator=epoch_generator(recipe.seed, epoch), start_batch=state["batch"]):
                if state["step"] >= total_steps:
                    break
                state["batch"] += 1
                if _train_step(batch, model, unwrapped, optimizer, scheduler, accelerator, cfg, state, noise_inputs):
                    state["step"] += 1
                    progress.step(epoch, epochs, state["epoch_loss"] / max(state["epoch_batches"], 1))
                    if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                        checkpoint()
            _end_epoch(state, unwrapped, val_tensors, cfg, device, task, metric, greater, monitor, run_dir, progress)
            checkpoint()
    atomic_write_jsonl(run_dir / "history.jsonl", state["history"])
    if state["best_score"] is None:
        raise RuntimeFailure(f"no epoch gave a finite {monitor}: the model diverged, so there is no best checkpoint",
                             hint="lower training.learning_rate")
    best = load_weights(run_dir / BEST_CHECKPOINT, unwrapped)
    missing_fallback = None
    if getattr(unwrapped, "missing_fallback", None) is not None:
        missing_fallback = calibrate_missing_fallback(unwrapped, train_tensors, val_tensors, cfg.eval_batch_size, device)
        save_checkpoint(run_dir / BEST_CHECKPOINT, unwrapped, best)  # the decisions are buffers of the model
        atomic_write_json(run_dir / MISSING_FALLBACK_FILE, missing_fallback)
    return TrainResult(monitor=monitor, best_score=state["best_score"], best_epoch=state["best_epoch"],
                       epochs_run=len(state["history"]), steps=state["step"], seconds=time.perf_counter() - start,
                       history=state["history"], stopped_early=state["stopped_early"],
                       skipped_batches=state["skipped_batches"], resumed_from=resumed_from,
                       missing_fallback=missing_fallback)


def _noise_inputs(recipe: Any, preprocessing: dict | None) -> dict[str, tuple[str, dict]]:
    if not recipe.training.modality_noise and getattr(recipe.model, "corruption_gate", None) is None:
        return {}
    if preprocessing is None:
        raise ValueError("training.modality_noise and model.corruption_gate need the preprocessing specs "
                         "(the noise scale of each input)")
    return {name: (cfg.modality, preprocessing["inputs"][name]["spec"]) for name, cfg in recipe.inputs.items()}


def _train_step(batch: dict, model: Any, unwrapped: Any, optimizer: Any, scheduler: Any, accelerator: Any,
                cfg: Any, state: dict[str, Any], noise_inputs: dict[str, tuple[str, dict]]) -> bool:
    """One optimizer step; False when the batch was skipped for a non-finite loss (on_nan=skip_batch)."""
    batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
    batch = drop_modalities(batch, list(unwrapped.encoders), cfg.modality_dropout)
    gate = unwrapped.corruption_gate
    if gate is not None:
        batch = add_corrupted_copies(batch, noise_inputs, gate.rate, gate.min_level)
    batch = corrupt_modalities(batch, noise_inputs, cfg.modality_noise)
    with accelerator.autocast():
        output = model(batch)
        loss, per_task = unwrapped.compute_loss(output, batch)
    if not torch.isfinite(loss):
        if cfg.on_nan == "skip_batch":
            state["skipped_batches"] += 1
            return False
        bad = [t for t, v in per_task.items() if not torch.isfinite(v)]
        raise RuntimeFailure(f"non-finite loss at step {state['step'] + 1} (epoch {state['epoch']}, task {', '.join(bad) or 'total'})",
                             hint="lower training.learning_rate, check the targets, or set training.on_nan=skip_batch")
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(loss)
    if cfg.grad_clip:
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    state["epoch_loss"] += float(loss.detach())
    state["epoch_batches"] += 1
    return True


def _end_epoch(state: dict[str, Any], model: Any, val_tensors: Any, cfg: Any, device: Any, task: str, metric: str,
               greater: bool, monitor: str, run_dir: Path, progress: TrainingProgress) -> None:
    """Validate, keep the best weights, decide on early stopping, and move the position to the next epoch."""
    epoch = state["epoch"]
    record: dict[str, Any] = {"epoch": epoch, "step": state["step"],
                              "train_loss": state["epoch_loss"] / max(state["epoch_batches"], 1)}
    if val_tensors is not None:
        evaluated = predict_tensors(model, val_tensors, cfg.eval_batch_size, device)
        record["validation"] = task_metrics(model, evaluated["predictions"], val_tensors)
        record["validation_loss"] = evaluated["loss"]
        loss = record["validation_loss"]
        score = record["validation"][task][metric] if task else (loss if loss is not None and math.isfinite(loss) else None)
    else:
        score, greater = record["train_loss"], False
    state["history"].append(record)
    best = state["best_score"]
    improved = score is not None and (best is None or (score > best if greater else score < best))
    progress.epoch_done(epoch, monitor, score, improved)
    if improved:
        state["best_score"], state["best_epoch"], state["stale"] = float(score), epoch, 0
        save_checkpoint(run_dir / BEST_CHECKPOINT, model, {"epoch": epoch, "step": state["step"], "monitor": monitor,
                                                           "score": float(score)})
    else:
        state["stale"] += 1
    if cfg.early_stopping_patience and state["stale"] >= cfg.early_stopping_patience:
        state["stopped_early"] = True
    state.update(epoch=epoch + 1, batch=0, epoch_loss=0.0, epoch_batches=0)
