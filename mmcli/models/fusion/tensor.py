"""Tensor Fusion Network (Zadeh et al. 2017): the outer product of all modalities, then a projection."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput, FusionOutput
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class TensorFusionConfig(Settings):
    type: Literal["tensor"] = "tensor"
    rank_dim: int = Field(8, ge=1, description="each modality is projected to this size before the outer product; "
                                               "the fused tensor has (rank_dim + 1) ** n_inputs features")
    max_features: int = Field(200_000, ge=1, description="refuse recipes whose outer product has more features")


@FUSIONS.register("tensor", TensorFusionConfig)
class TensorFusion(nn.Module):
    """``W vec(z_1 ⊗ z_2 ⊗ ... ⊗ z_M) + b`` with ``z_m = [P_m x_m + c_m; 1]`` (inputs in sorted name order).

    Each pooled vector ``x_m [B, D]`` is projected to ``d = rank_dim`` features and a constant 1 is
    appended, so the outer product holds every unimodal term, every pairwise product, ..., up to the
    M-way products. It has ``(d + 1) ** M`` features: with the default ``d = 8`` that is 81 for two
    inputs, 729 for three, 6,561 for four; the output layer has ``(d + 1) ** M * D`` weights. Recipes
    whose product exceeds ``max_features`` are refused (lower ``model.fusion.rank_dim``).

    A missing modality (mask row all False) enters as ``z_m = [0, ..., 0, 1]``, the neutral element
    of the construction: the product then holds exactly the terms of the other modalities (nothing
    is wiped out) and the missing modality's learned vector has no influence. A row with no
    modality present has only the constant term, so it fuses to the bias plus one weight column.

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``pooled [B, D]``, ``mask [B, T]``).
    Returns:
        ``FusionOutput`` with ``fused [B, D]``.
    """

    def __init__(self, config: TensorFusionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        self.names = sorted(input_names)
        self.num_features = (config.rank_dim + 1) ** len(self.names)
        if self.num_features > config.max_features:
            raise RecipeError(
                f"model.fusion.rank_dim: tensor fusion of {len(self.names)} inputs with rank_dim {config.rank_dim} "
                f"has (rank_dim + 1) ** {len(self.names)} = {self.num_features:,} features, "
                f"more than model.fusion.max_features ({config.max_features:,})",
                hint="lower model.fusion.rank_dim or use model.fusion.type=lowrank_tensor",
            )
        self.projections = nn.ModuleList(nn.Linear(hidden_size, config.rank_dim) for _ in self.names)
        self.output = nn.Linear(self.num_features, hidden_size)

    def features(self, outputs: dict[str, EncoderOutput]) -> Tensor:
        """The flattened outer product ``[B, (rank_dim + 1) ** M]``, modality index order = sorted names
        (the first input's index varies slowest, as in ``einsum('bi,bj,bk->bijk')``)."""
        product = None
        for name, projection in zip(self.names, self.projections):
            out = outputs[name]
            z = projection(out.pooled).masked_fill(~out.present.unsqueeze(-1), 0.0)  # [B, d]
            z = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=-1)  # [B, d + 1]
            product = z if product is None else torch.einsum("bi,bj->bij", product, z).flatten(1)
        return product  # type: ignore[return-value]

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        return FusionOutput(self.output(self.features(outputs)))

