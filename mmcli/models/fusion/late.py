"""Late fusion: a head per modality per task, predictions averaged over the modalities present."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput, FusionOutput, LateVectors
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class LateFusionConfig(Settings):
    type: Literal["late"] = "late"


@FUSIONS.register("late", LateFusionConfig)
class LateFusion(nn.Module):
    """Per-modality vectors ``v_m = GELU(W_m x_m)``; the model gives each modality its own task
    heads and averages their predictions (logits or values) over the modalities present in a row.

    ``forward`` returns the per-input vectors ``v [B, M, D]`` and the weights ``[B, M]`` the task heads
    combine their predictions with (``late``), and their presence-weighted mean as the fused vector (used
    for embeddings). Missing modalities get weight 0.
    """

    combines_predictions = True

    def __init__(self, config: LateFusionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        self.names = sorted(input_names)
        self.projections = nn.ModuleList(nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU()) for _ in self.names)

    def per_modality(self, outputs: dict[str, EncoderOutput]) -> tuple[Tensor, Tensor]:
        vectors = torch.stack([p(outputs[n].pooled) for n, p in zip(self.names, self.projections)], dim=1)  # [B, M, D]
        present = torch.stack([outputs[n].present for n in self.names], dim=1).to(vectors.dtype)  # [B, M]
        return vectors, present / present.sum(dim=1, keepdim=True).clamp(min=1.0)

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        vectors, weights = self.per_modality(outputs)
        return FusionOutput((vectors * weights.unsqueeze(-1)).sum(dim=1), late=LateVectors(list(self.names), vectors, weights))
