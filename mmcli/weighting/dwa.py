"""Dynamic weight average (Liu, Johns & Davison 2019, MTAN): an objective whose loss fell least over
the last epoch gets more weight: ``lambda_i = K exp(r_i / T) / sum_j exp(r_j / T)`` with ``r_i =
L_i(t-1) / L_i(t-2)`` (epoch means of the training loss), times the objective's recipe weight; 1
for the first two epochs. The epoch means are buffers of the model, so a resumed run continues
with the same weights."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.registries import LOSS_WEIGHTINGS
from mmcli.settings import Settings


class DwaWeightingConfig(Settings):
    type: Literal["dwa"] = "dwa"
    temperature: float = Field(2.0, gt=0, description="T: higher makes the weights more even")


@LOSS_WEIGHTINGS.register("dwa", DwaWeightingConfig)
class DwaWeighting(nn.Module):
    def __init__(self, config: DwaWeightingConfig, weights: dict[str, float]) -> None:
        super().__init__()
        self.static, self.names, self.temperature = dict(weights), list(weights), config.temperature
        self.register_buffer("epoch_losses", torch.full((2, len(self.names)), math.nan))  # [t-2, t-1]
        self.register_buffer("dynamic", torch.ones(len(self.names)))

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        index = {name: i for i, name in enumerate(self.names)}
        return sum(self.dynamic[index[name]] * self.static[name] * loss for name, loss in losses.items())  # type: ignore[return-value]

    def end_epoch(self, means: dict[str, float | None]) -> None:
        """Take this epoch's mean training losses; set the next epoch's weights."""
        current = torch.tensor([math.nan if means.get(name) is None else means[name] for name in self.names],
                               dtype=self.epoch_losses.dtype, device=self.epoch_losses.device)
        self.epoch_losses.copy_(torch.stack([self.epoch_losses[1], current]))
        ratio = self.epoch_losses[1] / self.epoch_losses[0]
        if torch.isfinite(ratio).all():
            self.dynamic.copy_(len(self.names) * torch.softmax(ratio / self.temperature, dim=0))

    def weights(self) -> dict[str, float]:
        return {name: self.static[name] * float(self.dynamic[i]) for i, name in enumerate(self.names)}
