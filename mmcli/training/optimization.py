"""The optimiser and the learning-rate schedule a recipe's ``training`` section names.

Every schedule starts with a linear warm-up over ``warmup_ratio`` of the optimizer steps: ``cosine``,
``linear`` and ``constant`` are transformers' schedules of those names (the same factors, as torch's
``LambdaLR``; tested equal); ``step`` is torch's ``StepLR`` after the warm-up (``SequentialLR``);
``plateau`` is torch's ``ReduceLROnPlateau`` after it, told each epoch's monitored score. Their
``state_dict`` is plain JSON, which checkpoints save for resume.

The three factors are written here rather than imported: ``transformers.optimization`` imports peft and
the whole of transformers, 2.2 s of every training's start-up on a 2-core CPU, for three formulas.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau, SequentialLR, StepLR


NOT_DECAYED = ("position", "pos_embed", "latents", "kind")  # tables of positions, learned queries, input kinds


def decayed(name: str, parameter: torch.nn.Parameter, module: torch.nn.Module) -> bool:
    """Weight decay applies to weight matrices and kernels; not to norms, biases, embeddings, position
    tables, learned queries and scalars such as temperatures and gates (OpenCLIP, timm)."""
    if parameter.ndim <= 1 or isinstance(module, torch.nn.Embedding):
        return False
    own = name.rsplit(".", 1)[-1]
    return not any(word in own for word in NOT_DECAYED)


def parameter_groups(model: torch.nn.Module, cfg: Any, modalities: dict[str, str]) -> list[dict[str, Any]]:
    """The trainable parameters in groups of one learning rate and one weight decay, in the model's order
    (so an optimizer's saved state always lines up). A part's rate (``learning_rates``) applies to every
    parameter of the part; when several named parts hold one, the one named last wins."""
    from mmcli.models.parts import parts_of

    owners = {f"{prefix}.{name}" if prefix else name: module
              for prefix, module in model.named_modules() for name, _ in module.named_parameters(recurse=False)}
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        parts = parts_of(name, modalities)
        rate = next((r for part, r in reversed(cfg.learning_rates.items()) if part in parts), cfg.learning_rate)
        decay = cfg.weight_decay if cfg.weight_decay_all or decayed(name, parameter, owners[name]) else 0.0
        groups.setdefault((rate, decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": decay} for (rate, decay), params in groups.items()]


def build_optimizer(groups: Any, cfg: Any, fused: bool = True) -> torch.optim.Optimizer:
    """The optimiser over parameter groups (or plain parameters); each group's rate and decay as given.

    Adam and AdamW use torch's fused kernel (one pass over every parameter; on the quickstart's CPU a step
    of the optimizer took 0.65 ms against 3.6 ms for the default multi-tensor one, about 5% of a training
    step); ``fused=False`` for sharded (FSDP) parameters."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused or None)
    if cfg.optimizer == "adam":  # weight decay as an L2 term in the gradient, as torch.optim.Adam does it
        return torch.optim.Adam(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=fused or None)
    return torch.optim.SGD(groups, lr=cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay)


class WarmupThenPlateau:
    """A warm-up stepped with the optimizer, then ``ReduceLROnPlateau`` stepped with each epoch's score
    (``SequentialLR`` cannot hold a scheduler that steps on scores)."""

    def __init__(self, warmup: LRScheduler, plateau: ReduceLROnPlateau, warmup_steps: int) -> None:
        self.warmup, self.plateau, self.warmup_steps = warmup, plateau, warmup_steps
        self.optimizer = plateau.optimizer

    def step(self) -> None:
        if self.warmup.last_epoch < self.warmup_steps:  # after it, only the plateau changes the rate
            self.warmup.step()

    def observe(self, score: float) -> None:
        """An epoch's monitored score, greater is better."""
        self.plateau.step(score)

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"warmup": self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup.load_state_dict(state["warmup"])
        self.plateau.load_state_dict(state["plateau"])


def _warmup_factor(step: int, warmup: int) -> float | None:
    return float(step) / float(max(1, warmup)) if step < warmup else None


def _constant_factor(step: int, *, warmup: int) -> float:
    factor = _warmup_factor(step, warmup)
    return 1.0 if factor is None else factor


def _linear_factor(step: int, *, warmup: int, total: int) -> float:
    factor = _warmup_factor(step, warmup)
    return max(0.0, float(total - step) / float(max(1, total - warmup))) if factor is None else factor


def _cosine_factor(step: int, *, warmup: int, total: int) -> float:
    factor = _warmup_factor(step, warmup)
    if factor is not None:
        return factor
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def warmup_schedule(optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int) -> LambdaLR:
    """transformers' ``constant_with_warmup`` / ``linear`` / ``cosine`` schedule (half a cosine wave)."""
    if name == "constant":
        return LambdaLR(optimizer, partial(_constant_factor, warmup=warmup))
    factor = {"linear": _linear_factor, "cosine": _cosine_factor}[name]
    return LambdaLR(optimizer, partial(factor, warmup=warmup, total=total))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, total_steps: int, steps_per_epoch: int) -> Any:
    """The schedule ``training.scheduler`` names; ``step()`` once per optimizer step."""
    warmup = int(cfg.warmup_ratio * total_steps)
    if cfg.scheduler in ("cosine", "linear", "constant"):
        return warmup_schedule(optimizer, cfg.scheduler, warmup, total_steps)
    warm_up = warmup_schedule(optimizer, "constant", warmup, total_steps)
    if cfg.scheduler == "step":
        every = max(1, round(cfg.step_epochs * steps_per_epoch))
        return SequentialLR(optimizer, [warm_up, StepLR(optimizer, every, gamma=cfg.gamma)], milestones=[warmup])
    if cfg.gamma == 1:  # a factor of 1 never changes the rate (and ReduceLROnPlateau refuses it)
        return warm_up
    # threshold 0: any better score is an improvement; eps 0: every reduction is applied
    plateau = ReduceLROnPlateau(optimizer, mode="max", factor=cfg.gamma, patience=cfg.plateau_patience,
                                threshold=0.0, eps=0.0)
    return WarmupThenPlateau(warm_up, plateau, warmup)


def observe_epoch(scheduler: Any, score: float | None, greater_is_better: bool) -> None:
    """Tell a plateau schedule the epoch's monitored score (the others ignore it)."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps it
    if isinstance(inner, WarmupThenPlateau) and score is not None:
        inner.observe(score if greater_is_better else -score)
