"""Adversarial modality invariance: a discriminator learns which input an embedding came from, and a
gradient-reversal layer (Ganin & Lempitsky 2015) hands the encoders the opposite gradient, so they
learn embeddings the discriminator cannot tell apart: a modality-invariant shared space.

Forward, the reversal is the identity; backward it multiplies the gradient by ``-lambda``. The
strength follows the DANN schedule ``lambda(p) = strength * (2 / (1 + exp(-10 p)) - 1)`` over the
training progress ``p`` (near 0 at the start, when the discriminator has learnt nothing worth
reversing), or a linear warm-up, or stays constant. The discriminator itself is trained normally.
Metric: the discriminator's accuracy on held-out rows (chance: 1 / number of inputs).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings, accuracy_of, check_inputs
from mmcli.registries import OBJECTIVES


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: Tensor, strength: float) -> Tensor:
    """The identity forward; the gradient times ``-strength`` backward."""
    return _Reverse.apply(x, strength)


class AdversarialConfig(ObjectiveSettings):
    type: Literal["adversarial"] = "adversarial"
    inputs: list[str] | None = Field(None, description="inputs whose embeddings must be indistinguishable (default: all)")
    hidden: int = Field(64, ge=1, description="hidden width of the discriminator")
    strength: float = Field(1.0, ge=0, description="reversal strength lambda at the end of its schedule (0: no reversal)")
    schedule: Literal["dann", "linear", "constant"] = Field("dann", description="how lambda rises with training progress")
    warmup: float = Field(0.3, gt=0, le=1, description="linear schedule: share of training over which lambda rises")

    @model_validator(mode="after")
    def _two(self) -> "AdversarialConfig":
        if self.inputs is not None and len(set(self.inputs)) < 2:
            raise ValueError("inputs: name at least two different inputs")
        return self

    def check(self, recipe: Any, name: str) -> None:
        check_inputs(self.inputs or [], recipe, f"objectives.{name}.inputs")
        if self.inputs is None and len(recipe.inputs) < 2:
            raise ValueError(f"objectives.{name}: needs at least two inputs")


@OBJECTIVES.register("adversarial", AdversarialConfig)
class ModalityAdversary(Objective):
    """``discriminator``: embedding ``[B, P] -> [B, M]`` logits over the inputs; loss: cross-entropy of
    the modality label over every present (row, input), through the reversal."""

    metrics = {"discriminator_accuracy": False}  # lower: closer to chance, more invariant
    main_metric = "discriminator_accuracy"
    reads_fusion = False  # the inputs' own embeddings

    def __init__(self, config: AdversarialConfig, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.names = list(config.inputs or context.inputs)
        width = context.shared_size or context.hidden_size
        self.discriminator = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, len(self.names)))
        self.strength, self.schedule, self.warmup = config.strength, config.schedule, config.warmup
        self.progress = 1.0  # evaluation outside training: the full strength (it only matters for gradients)

    def set_progress(self, fraction: float) -> None:
        self.progress = fraction

    def current_strength(self) -> float:
        if self.schedule == "constant":
            return self.strength
        if self.schedule == "linear":
            return self.strength * min(self.progress / self.warmup, 1.0)
        return self.strength * (2 / (1 + math.exp(-10 * self.progress)) - 1)

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor:
        """Cross-entropy of the input's index over every present (row, input), the embeddings through the
        reversal; absent rows are masked, not removed (no host sync), and count for nothing."""
        total, count = None, None
        for index, name in enumerate(self.names):
            vector, present = rep.embedding(name)
            logits = self.discriminator(reverse_gradient(vector, self.current_strength()))
            labels = torch.where(present, torch.full_like(present, index, dtype=torch.long), -100)
            term = F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum")
            total = term if total is None else total + term
            count = present.sum() if count is None else count + present.sum()
        return total / count.clamp(min=1)

    def outputs(self, rep: Any) -> dict[str, Tensor]:
        """Per row and input: whether the discriminator named the input right (-1: input absent)."""
        columns = []
        for index, name in enumerate(self.names):
            vector, present = rep.embedding(name)
            right = (self.discriminator(vector).argmax(dim=-1) == index).float()
            columns.append(torch.where(present, right, torch.full_like(right, -1.0)))
        return {"right": torch.stack(columns, dim=1)}

    def evaluate(self, outputs: dict[str, Tensor], tensors: dict[str, Tensor]) -> dict[str, Any]:
        found = accuracy_of(outputs["right"]) if outputs else None
        if found is None:
            return {}
        return {"discriminator_accuracy": found[0], "chance": 1 / len(self.names), "count": found[1]}
