"""Sum fusion: per-modality projections added up over the modalities present in each row."""

from __future__ import annotations

from typing import Literal

from torch import nn

from mmcli.models.outputs import EncoderOutput, FusionOutput
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class SumFusionConfig(Settings):
    type: Literal["sum"] = "sum"


@FUSIONS.register("sum", SumFusionConfig)
class SumFusion(nn.Module):
    """``GELU(sum_m present_m * (W_m x_m + b_m))`` over inputs in sorted name order.

    A missing modality (mask row all False) is left out of the sum, so its learned "missing"
    vector has no influence; a row with no modality present fuses to ``GELU(0) = 0``.
    Unlike concat, the result does not grow with the number of inputs and any subset of
    modalities lands in the same space (each modality is one additive term).

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``pooled [B, D]``, ``mask [B, T]``).
    Returns:
        ``FusionOutput`` with ``fused [B, D]``.
    """

    def __init__(self, config: SumFusionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        self.names = sorted(input_names)
        self.projections = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in self.names)
        self.activation = nn.GELU()

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        total = None
        for name, projection in zip(self.names, self.projections):
            out = outputs[name]
            # where, not multiply: a missing row contributes exactly zero whatever its vector holds
            term = projection(out.pooled).masked_fill(~out.present.unsqueeze(-1), 0.0)  # [B, D]
            total = term if total is None else total + term
        return FusionOutput(self.activation(total))
