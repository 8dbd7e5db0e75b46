"""What robust fusion asks of a task (an optional protocol, never the task contract): single-input
heads of the task's own kind, per-row losses, a constant prior and an ensemble average. Classification
and regression have it; tasks without it (text generation, ...) are left as they are."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from mmcli.registries import OBJECTIVES

METHODS = ("new_head", "finish", "prediction_loss", "row_loss", "labelled", "prior", "average")


@runtime_checkable
class RobustTask(Protocol):
    def new_head(self) -> nn.Module: ...
    def finish(self, raw: Tensor) -> Tensor: ...
    def prediction_loss(self, prediction: Tensor, target: Tensor) -> Tensor: ...
    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor: ...
    def labelled(self, target: Tensor) -> Tensor: ...
    def prior(self, target: Tensor) -> Tensor: ...
    def average(self, predictions: list[Tensor]) -> Tensor: ...


def robust_tasks(tasks: dict[str, Any]) -> dict[str, Any]:
    """The tasks (name -> objective) that robust fusion can serve."""
    return {name: task for name, task in tasks.items() if isinstance(task, RobustTask)}


def has_robust_task_type(recipe: Any) -> bool:
    """Some task of the recipe is of a type with the protocol (checked on the classes, before building)."""
    return any(all(callable(getattr(OBJECTIVES.get(cfg.type), method, None)) for method in METHODS)
               for cfg in recipe.tasks.values())
