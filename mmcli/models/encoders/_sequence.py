"""The transformer body shared by sequence encoders (text, audio frames, image patches)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmcli.models.outputs import masked_mean


class MaskedTransformer(nn.Module):
    """Optional learned CLS token + pre-norm ``nn.TransformerEncoder`` with key-padding masks.

    ``forward(h [B, T, D], mask [B, T] | None) -> (tokens [B, T, D], pooled [B, D])``: pooled is
    the CLS output or the masked mean of the tokens. Rows with no real position attend to
    padding instead of softmaxing over nothing (NaN); encoders replace their output with the
    learned "missing" vector anyway.
    """

    def __init__(self, hidden_size: int, heads: int, layers: int, dropout: float, pooling: str) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(hidden_size) * 0.02) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(hidden_size, heads, dim_feedforward=4 * hidden_size, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # nested tensors drop padded positions in eval only; keep train/eval numerics identical
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        padding = None if mask is None else ~mask & mask.any(dim=1, keepdim=True)
        if self.cls is not None:
            h = torch.cat([self.cls.to(h.dtype).expand(h.shape[0], 1, -1), h], dim=1)
            if padding is not None:
                padding = torch.cat([padding.new_zeros(h.shape[0], 1), padding], dim=1)
        h = self.encoder(h, src_key_padding_mask=padding)
        if self.cls is not None:
            return h[:, 1:], h[:, 0]
        return h, (h.mean(dim=1) if mask is None else masked_mean(h, mask))
