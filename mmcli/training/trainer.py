"""The trainer: AdamW, warm-up + cosine schedule, validation each epoch, early stopping,
best checkpoint, on Hugging Face accelerate (CPU here, GPU when present)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmcli.data.loader import batches_per_epoch, iterate_batches, split_tensors
from mmcli.errors import DataError, RuntimeFailure
from mmcli.evaluation.predictions import predict_tensors, task_metrics
from mmcli.runs import BEST_CHECKPOINT, atomic_write_jsonl
from mmcli.training.checkpoint import load_weights, save_checkpoint
from mmcli.progress import TrainingProgress
from mmcli.training.seeding import epoch_generator, seed_everything


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


def make_accelerator(recipe: Any) -> Any:
    from accelerate import Accelerator

    wants_cpu = recipe.training.device == "cpu" or not torch.cuda.is_available()
    if recipe.training.device == "cuda" and not torch.cuda.is_available():
        raise DataError("training.device: cuda was asked for but no GPU is visible", hint="use training.device=auto")
    return Accelerator(cpu=wants_cpu, mixed_precision=recipe.training.mixed_precision)


def monitor_of(recipe: Any, model: Any) -> tuple[str, str, bool]:
    """(task, metric, greater_is_better) used to select the best checkpoint."""
    if recipe.training.monitor:
        task, _, metric = recipe.training.monitor.partition(".")
        head = model.tasks[task]
        metric = metric or head.main_metric
        greater = head.greater_is_better if metric == head.main_metric else metric not in ("mae", "rmse", "loss")
        return task, metric, greater
    task = next(iter(recipe.tasks))
    head = model.tasks[task]
    return task, head.main_metric, head.greater_is_better


def train(recipe: Any, model: Any, datasets: Any, run_dir: Path, show_progress: bool = True) -> TrainResult:
    """Train ``model`` on the cached splits; the best checkpoint lands in run_dir/checkpoints/best."""
    from transformers.optimization import get_cosine_schedule_with_warmup

    start = time.perf_counter()
    cfg = recipe.training
    seed_everything(recipe.seed)
    inputs, tasks = list(recipe.inputs), list(recipe.tasks)
    train_tensors = split_tensors(datasets[recipe.data.train_split], inputs, tasks)
    val_name = recipe.data.validation_split
    val_tensors = split_tensors(datasets[val_name], inputs, tasks) if val_name and val_name in datasets else None

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
    monitor = f"{task}.{metric}" if val_tensors is not None else "train.loss"

    result = TrainResult(monitor=monitor, best_score=None, best_epoch=0, epochs_run=0, steps=0, seconds=0.0)
    best_dir, stale_epochs = run_dir / BEST_CHECKPOINT, 0
    with TrainingProgress(total_steps, enabled=show_progress) as progress:
        for epoch in range(1, epochs + 1):
            model.train()
            epoch_loss, epoch_batches = 0.0, 0
            for batch in iterate_batches(train_tensors, cfg.batch_size, shuffle=True,
                                         generator=epoch_generator(recipe.seed, epoch), drop_last=True):
                if result.steps >= total_steps:
                    break
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                with accelerator.autocast():
                    output = model(batch)
                    loss, per_task = unwrapped.compute_loss(output, batch)
                if not torch.isfinite(loss):
                    bad = [t for t, v in per_task.items() if not torch.isfinite(v)]
                    raise RuntimeFailure(f"non-finite loss at step {result.steps + 1} (task {', '.join(bad) or 'total'})",
                                         hint="lower training.learning_rate or check the targets")
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                if cfg.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                result.steps += 1
                epoch_loss += float(loss.detach())
                epoch_batches += 1
                progress.step(epoch, epochs, epoch_loss / epoch_batches)
            record: dict[str, Any] = {"epoch": epoch, "step": result.steps, "train_loss": epoch_loss / max(epoch_batches, 1),
                                      "lr": scheduler.get_last_lr()[0]}
            if val_tensors is not None:
                evaluated = predict_tensors(unwrapped, val_tensors, cfg.eval_batch_size, device)
                record["validation"] = task_metrics(unwrapped, evaluated["predictions"], val_tensors)
                record["validation_loss"] = evaluated["loss"]
                score = record["validation"][task][metric]
            else:
                score, greater = record["train_loss"], False
            result.history.append(record)
            result.epochs_run = epoch
            improved = result.best_score is None or (score > result.best_score if greater else score < result.best_score)
            progress.epoch_done(epoch, monitor, score, improved)
            if improved:
                result.best_score, result.best_epoch, stale_epochs = float(score), epoch, 0
                save_checkpoint(best_dir, unwrapped, {"epoch": epoch, "step": result.steps, "monitor": monitor, "score": float(score)})
            else:
                stale_epochs += 1
            if cfg.early_stopping_patience and stale_epochs >= cfg.early_stopping_patience:
                result.stopped_early = True
                break
            if result.steps >= total_steps:
                break
    atomic_write_jsonl(run_dir / "history.jsonl", result.history)
    load_weights(best_dir, unwrapped)
    result.seconds = time.perf_counter() - start
    return result
