"""Low-rank Multimodal Fusion (Liu et al. 2018): tensor fusion with a rank-R factorised weight."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput, FusionOutput
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class LowRankTensorFusionConfig(Settings):
    type: Literal["lowrank_tensor"] = "lowrank_tensor"
    rank: int = Field(4, ge=1, description="rank R of the factorised fusion weight")


@FUSIONS.register("lowrank_tensor", LowRankTensorFusionConfig)
class LowRankTensorFusion(nn.Module):
    """``sum_r prod_m (W_m^r · [x_m; 1]) + b`` with factors ``W_m [R, D + 1, D]`` (inputs in sorted name order).

    This equals tensor fusion's ``W vec([x_1; 1] ⊗ ... ⊗ [x_M; 1])`` for a weight ``W`` of rank R,
    but costs ``O(M R D^2)`` instead of ``O((D + 1)^M D)``, so the pooled vectors are used at full size.
    (The paper's extra per-rank weights are left out: they can be absorbed into the factors.)

    A missing modality (mask row all False) enters as ``[0, ..., 0, 1]``, the neutral element of the
    tensor construction: its factor reduces to the learned row ``W_m^r[D]``, exactly the slice of the
    full tensor weight that tensor fusion would use for "this modality absent", so the product of
    the others is not wiped out and the missing modality's learned vector has no influence.

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``pooled [B, D]``, ``mask [B, T]``).
    Returns:
        ``FusionOutput`` with ``fused [B, D]``.
    """

    def __init__(self, config: LowRankTensorFusionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        self.names = sorted(input_names)
        self.rank = config.rank
        self.factors = nn.ParameterList()
        for _ in self.names:
            factor = torch.empty(config.rank, hidden_size + 1, hidden_size)
            for r in range(config.rank):
                nn.init.xavier_normal_(factor[r])  # as in the paper's code: each rank slice a [D + 1, D] matrix
            self.factors.append(nn.Parameter(factor))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def factor_outputs(self, outputs: dict[str, EncoderOutput]) -> list[Tensor]:
        """Per input (sorted names): ``W_m^r · [x_m; 1]`` as ``[B, R, D]``."""
        result = []
        for name, factor in zip(self.names, self.factors):
            out = outputs[name]
            x = out.pooled.masked_fill(~out.present.unsqueeze(-1), 0.0)
            x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=-1)  # [B, D + 1]
            result.append(torch.einsum("bi,rio->bro", x, factor.to(x.dtype)))
        return result

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        product = None
        for term in self.factor_outputs(outputs):
            product = term if product is None else product * term  # [B, R, D]
        return FusionOutput(product.sum(dim=1) + self.bias.to(product.dtype))  # type: ignore[union-attr]
