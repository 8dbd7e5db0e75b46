"""The optimiser and the learning-rate schedule a recipe's ``training`` section names.

Every schedule is a ``LambdaLR`` over optimizer steps: a linear warm-up over ``warmup_ratio`` of the
steps, then its shape. ``cosine`` is transformers' cosine-with-warm-up (the default, unchanged);
the others are a :class:`ScheduleShape`, whose settings and plateau state are in the scheduler's
``state_dict`` (LambdaLR saves a callable object's attributes), so resume continues them exactly.
"""

from __future__ import annotations

from typing import Any

import torch

SCHEDULERS = ("constant", "cosine", "linear", "step", "plateau")
OPTIMIZERS = ("adamw", "adam", "sgd")


def build_optimizer(parameters: Any, cfg: Any) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":  # weight decay as an L2 term in the gradient, as torch.optim.Adam does it
        return torch.optim.Adam(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(parameters, lr=cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


class ScheduleShape:
    """The learning-rate factor at an optimizer step (a callable object, so that LambdaLR saves it)."""

    def __init__(self, kind: str, warmup: int, total: int, step_every: int, gamma: float, patience: int) -> None:
        self.kind, self.warmup, self.total = kind, warmup, total
        self.step_every, self.gamma, self.patience = step_every, gamma, patience
        self.factor, self.best, self.stale = 1.0, None, 0  # plateau: its reductions so far

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        if self.kind == "linear":
            return max(0.0, (self.total - step) / max(1, self.total - self.warmup))
        if self.kind == "step":
            return self.gamma ** ((step - self.warmup) // self.step_every)
        return self.factor  # constant: 1; plateau: reduced by observe()

    def observe(self, score: float | None, greater_is_better: bool) -> None:
        """An epoch's monitored score: after ``patience`` epochs without improvement, lr *= gamma."""
        if self.kind != "plateau" or score is None:
            return
        if self.best is None or (score > self.best if greater_is_better else score < self.best):
            self.best, self.stale = score, 0
            return
        self.stale += 1
        if self.stale > self.patience:
            self.factor *= self.gamma
            self.stale = 0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, total_steps: int, steps_per_epoch: int) -> Any:
    warmup = int(cfg.warmup_ratio * total_steps)
    if cfg.scheduler == "cosine":
        from transformers.optimization import get_cosine_schedule_with_warmup

        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    step_every = max(1, round(cfg.step_epochs * steps_per_epoch))
    shape = ScheduleShape(cfg.scheduler, warmup, total_steps, step_every, cfg.gamma, cfg.plateau_patience)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, shape)


def observe_epoch(scheduler: Any, score: float | None, greater_is_better: bool) -> None:
    """Tell a plateau schedule the epoch's monitored score (the others ignore it)."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it
    shapes = [shape for shape in getattr(inner, "lr_lambdas", []) if isinstance(shape, ScheduleShape)]
    for shape in shapes:
        shape.observe(score, greater_is_better)
    if shapes:  # the next step's rate was set before this score was known: set it again
        for group, base, shape in zip(inner.optimizer.param_groups, inner.base_lrs, inner.lr_lambdas):
            group["lr"] = base * shape(inner.last_epoch)
        inner._last_lr = [group["lr"] for group in inner.optimizer.param_groups]
