"""Pieces shared by task heads (an underscore module: the registry does not import it as a task)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from mmcli.config import Settings


class TaskSettings(Settings):
    """Fields every task has; a task type adds ``type: Literal[name]`` and its own settings."""

    column: str = Field(..., description="manifest column holding the target")
    weight: float = Field(1.0, ge=0, description="weight of this task's loss in the total")
    hidden: int | None = Field(None, ge=1, description="MLP hidden size of the head; None = one linear layer")
    dropout: float = Field(0.1, ge=0, lt=1)


def mlp(hidden_size: int, out: int, hidden: int | None, dropout: float) -> nn.Sequential:
    """``[B, hidden_size]`` -> ``[B, out]``: dropout + linear, or dropout + linear + GELU + dropout + linear."""
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, out))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, hidden), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out))


def zero_loss(prediction: Tensor) -> Tensor:
    """A 0 that is still connected to the graph, for batches without any label (mean of nothing is NaN)."""
    return prediction.sum() * 0.0
