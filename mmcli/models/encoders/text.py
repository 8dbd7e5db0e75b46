"""Text encoder: token + learned position embeddings and a small Transformer encoder."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.errors import RecipeError
from mmcli.models.encoders._sequence import MaskedTransformer
from mmcli.models.outputs import EncoderOutput, finish
from mmcli.registries import ENCODERS


class TextTransformerConfig(EncoderSettings):
    type: Literal["transformer"] = "transformer"
    layers: int = Field(2, ge=1, description="Transformer encoder layers")
    heads: int = Field(4, ge=1, description="attention heads; must divide model.hidden_size")
    dropout: float = Field(0.1, ge=0, lt=1)
    pooling: Literal["mean", "cls"] = Field("mean", description="masked mean of tokens, or a learned [CLS] token")


@ENCODERS["text"].register("transformer", TextTransformerConfig)
class TextTransformerEncoder(nn.Module):
    """Padding-aware Transformer over token ids.

    Spec keys: ``vocab_size``, ``max_length``, ``pad_id``.

    Args (forward):
        x: ``[B, L]`` int64 token ids. mask: ``[B, L]`` bool, True for real tokens.
    Returns:
        ``EncoderOutput(tokens [B, L, D], mask [B, L], pooled [B, D])``.
    """

    def __init__(self, config: TextTransformerConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        if hidden_size % config.heads:
            raise RecipeError(f"text encoder: heads ({config.heads}) must divide hidden_size ({hidden_size})")
        self.pooling = config.pooling
        self.max_length = int(spec["max_length"])
        self.tokens = nn.Embedding(int(spec["vocab_size"]), hidden_size, padding_idx=int(spec.get("pad_id", 0)))
        self.positions = nn.Embedding(self.max_length, hidden_size)
        self.body = MaskedTransformer(hidden_size, config.heads, config.layers, config.dropout, config.pooling)
        self.dropout = nn.Dropout(config.dropout)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        # the processor pads/truncates to max_length already; slicing guards the position table
        x, mask = x[:, : self.max_length], mask[:, : self.max_length].bool()
        positions = torch.arange(x.shape[1], device=x.device)
        h, pooled = self.body(self.dropout(self.tokens(x) + self.positions(positions)), mask)
        return finish(h, mask, pooled, self.missing)
