"""Text encoder: a bag of token embeddings (no order, no attention): the fastest text baseline."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


class TextEmbeddingBagConfig(EncoderSettings):
    type: Literal["embedding_bag"] = "embedding_bag"
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the token embeddings")


@ENCODERS["text"].register("embedding_bag", TextEmbeddingBagConfig)
class TextEmbeddingBagEncoder(nn.Module):
    """Mean of the embeddings of the real tokens (``nn.EmbeddingBag(mode="mean")`` with padding skipped).

    Kept as ``nn.Embedding`` + a masked mean rather than ``nn.EmbeddingBag`` because the token
    embeddings themselves are returned as ``tokens`` (for attention fusions).

    Spec keys: ``vocab_size``, ``pad_id``.

    Args (forward):
        x: ``[B, L]`` int64 token ids. mask: ``[B, L]`` bool, True for real tokens.
    Returns:
        ``EncoderOutput(tokens [B, L, D], mask [B, L], pooled [B, D])``: tokens are the (masked) embeddings,
        pooled their mean over real tokens.
    """

    def __init__(self, config: TextEmbeddingBagConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(int(spec["vocab_size"]), hidden_size, padding_idx=int(spec.get("pad_id", 0)))
        self.dropout = nn.Dropout(config.dropout)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        mask = mask.bool()
        h = self.dropout(self.tokens(x.long()))
        return finish(h, mask, masked_mean(h, mask), self.missing)
