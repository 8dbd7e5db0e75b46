"""Text encoder: token + learned position embeddings and a small Transformer encoder."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.config import Settings
from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


class TextTransformerConfig(Settings):
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
        self.cls = nn.Parameter(torch.randn(hidden_size) * 0.02) if config.pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(
            hidden_size, config.heads, dim_feedforward=4 * hidden_size, dropout=config.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        # nested tensors drop padded positions in eval only; keep train/eval numerics identical
        self.encoder = nn.TransformerEncoder(layer, config.layers, norm=nn.LayerNorm(hidden_size),
                                             enable_nested_tensor=False)
        self.dropout = nn.Dropout(config.dropout)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        # the processor pads/truncates to max_length already; slicing guards the position table
        x, mask = x[:, : self.max_length], mask[:, : self.max_length].bool()
        positions = torch.arange(x.shape[1], device=x.device)
        h = self.dropout(self.tokens(x) + self.positions(positions))
        present = mask.any(dim=1, keepdim=True)
        # rows with no real token would softmax over nothing (NaN); let them attend to padding,
        # their output is replaced by the learned missing vector anyway
        padding = ~mask & present
        if self.cls is not None:
            h = torch.cat([self.cls.expand(h.shape[0], 1, -1), h], dim=1)
            padding = torch.cat([padding.new_zeros(h.shape[0], 1), padding], dim=1)
        h = self.encoder(h, src_key_padding_mask=padding)
        if self.cls is not None:
            pooled, h = h[:, 0], h[:, 1:]
        else:
            pooled = masked_mean(h, mask)
        return finish(h, mask, pooled, self.missing)
