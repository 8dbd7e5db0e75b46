"""Concatenation fusion: every input's pooled vector side by side, then a projection."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import torch
from torch import nn

from mmcli.models.outputs import EncoderOutput, FusionOutput
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class ConcatFusionConfig(Settings):
    type: Literal["concat"] = "concat"
    projection: Literal["linear", "none"] = Field(
        "linear", description="linear: Linear + GELU back to model.hidden_size; none: the plain concatenation "
                              "(the fused vector is then inputs x hidden_size wide, and the task heads read all of it)")

    def fused_size(self, inputs: int, hidden_size: int) -> int:
        return hidden_size if self.projection == "linear" else inputs * hidden_size


@FUSIONS.register("concat", ConcatFusionConfig)
class ConcatFusion(nn.Module):
    """``GELU(Linear(concat_m pooled_m))`` with inputs in sorted name order (``projection: none``: the
    concatenation itself, ``[B, M * D]``).

    Missing modalities enter as their encoder's learned "missing" vector, so the layer can learn
    what absence means. Dropout is applied by the model after fusion (``model.dropout``).

    Args (forward):
        outputs: input name -> ``EncoderOutput`` with ``pooled [B, D]``.
    Returns:
        ``FusionOutput`` with ``fused [B, D]``.
    """

    def __init__(self, config: ConcatFusionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        self.names = sorted(input_names)  # sorted: the layout never depends on recipe key order
        self.proj = nn.Sequential(nn.Linear(len(self.names) * hidden_size, hidden_size), nn.GELU()) \
            if config.projection == "linear" else nn.Identity()

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        return FusionOutput(self.proj(torch.cat([outputs[name].pooled for name in self.names], dim=-1)))
