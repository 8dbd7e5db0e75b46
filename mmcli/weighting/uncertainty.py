"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018): each objective gets a learned
log-variance ``s_i`` and ``total = sum_i 0.5 exp(-s_i) w_i L_i + 0.5 s_i``. An objective whose loss
stays large (noisy) is weighed down, and the ``s_i`` term keeps the weights from collapsing to 0.
The ``s_i`` are parameters of the model: trained with it, saved in its checkpoints."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmcli.registries import LOSS_WEIGHTINGS
from mmcli.settings import Settings


class UncertaintyWeightingConfig(Settings):
    type: Literal["uncertainty"] = "uncertainty"


@LOSS_WEIGHTINGS.register("uncertainty", UncertaintyWeightingConfig)
class UncertaintyWeighting(nn.Module):
    def __init__(self, config: UncertaintyWeightingConfig, weights: dict[str, float]) -> None:
        super().__init__()
        self.static = dict(weights)
        self.log_variance = nn.ParameterDict({name: nn.Parameter(torch.zeros(())) for name in weights})

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(0.5 * torch.exp(-self.log_variance[name]) * self.static[name] * loss + 0.5 * self.log_variance[name]
                   for name, loss in losses.items())  # type: ignore[return-value]

    def weights(self) -> dict[str, float]:
        return {name: self.static[name] * 0.5 * float(torch.exp(-value.detach())) for name, value in self.log_variance.items()}
