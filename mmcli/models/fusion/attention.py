"""Attention fusion: a learned query attends over the modalities' pooled vectors."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput, FusionOutput
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class AttentionFusionConfig(Settings):
    type: Literal["attention"] = "attention"
    heads: int = Field(4, ge=1, description="attention heads; must divide model.hidden_size")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the attention weights")


@FUSIONS.register("attention", AttentionFusionConfig)
class AttentionFusion(nn.Module):
    """Multi-head attention pooling: one learned query, keys/values = pooled vectors + modality embeddings.

    Missing modalities are excluded with ``key_padding_mask``; a row with no modality present
    attends over all (learned "missing") vectors instead, since attending over nothing is NaN.

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``pooled [B, D]``, ``mask [B, T]``).
    Returns:
        ``FusionOutput`` with ``fused [B, D]``.
    """

    def __init__(self, config: AttentionFusionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        if hidden_size % config.heads:
            raise RecipeError(f"attention fusion: heads ({config.heads}) must divide hidden_size ({hidden_size})")
        self.names = sorted(input_names)
        self.query = nn.Parameter(torch.randn(1, 1, hidden_size) * 0.02)
        self.modality = nn.Parameter(torch.randn(len(self.names), hidden_size) * 0.02)  # which input a key is
        self.norm = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, config.heads, dropout=config.dropout, batch_first=True)

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        keys = torch.stack([outputs[name].pooled for name in self.names], dim=1)  # [B, M, D]
        keys = self.norm(keys + self.modality.to(keys.dtype))
        present = torch.stack([outputs[name].present for name in self.names], dim=1)  # [B, M]
        padding = ~present & present.any(dim=1, keepdim=True)
        query = self.query.expand(keys.shape[0], -1, -1).to(keys.dtype)
        fused, _ = self.attention(query, keys, keys, key_padding_mask=padding, need_weights=False)
        return FusionOutput(fused.squeeze(1))
