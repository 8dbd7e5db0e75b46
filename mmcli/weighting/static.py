"""Static weighting: ``total = sum_i w_i * L_i`` with each objective's recipe ``weight``."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from mmcli.registries import LOSS_WEIGHTINGS
from mmcli.settings import Settings


class StaticWeightingConfig(Settings):
    type: Literal["static"] = "static"


@LOSS_WEIGHTINGS.register("static", StaticWeightingConfig)
class StaticWeighting(nn.Module):
    """``forward({name: loss})`` -> the weighted sum, in the objectives' order; objectives with no
    loss this step (absent from ``losses``) are left out."""

    def __init__(self, config: StaticWeightingConfig, weights: dict[str, float]) -> None:
        super().__init__()
        self.static = dict(weights)

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        return sum(self.static[name] * loss for name, loss in losses.items())  # type: ignore[return-value]

    def weights(self) -> dict[str, float]:
        """The effective weight of each objective (for the history and the progress display)."""
        return dict(self.static)
