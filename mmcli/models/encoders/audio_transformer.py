"""Audio encoder: a Transformer over log-mel/MFCC frames (one token per frame)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.config import Settings
from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


class AudioTransformerConfig(Settings):
    type: Literal["transformer"] = "transformer"
    layers: int = Field(2, ge=1, description="Transformer encoder layers")
    heads: int = Field(4, ge=1, description="attention heads; must divide model.hidden_size")
    dropout: float = Field(0.1, ge=0, lt=1)
    pooling: Literal["mean", "cls"] = Field("mean", description="masked mean of frame tokens, or a learned [CLS] token")


@ENCODERS["audio"].register("transformer", AudioTransformerConfig)
class AudioTransformerEncoder(nn.Module):
    """Each frame's feature vector -> Linear(F -> D) + a learned position -> a padding-aware Transformer.

    Attention cost grows with frames squared: fine for the ~100 frames of a 1 s clip at a 10 ms hop.

    Spec keys: ``n_features``, ``frames``, ``mean``, ``std`` (floats, or one per feature).

    Args (forward):
        x: ``[B, F, T]`` float features. mask: ``[B, T]`` bool, True for real frames.
    Returns:
        ``EncoderOutput(tokens [B, T, D], mask [B, T], pooled [B, D])``.
    """

    def __init__(self, config: AudioTransformerConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        if hidden_size % config.heads:
            raise RecipeError(f"audio encoder transformer: heads ({config.heads}) must divide hidden_size ({hidden_size})")
        # scalar or per-feature statistics both broadcast as [F or 1, 1]
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).reshape(-1, 1))
        self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).reshape(-1, 1))
        self.max_frames = int(spec["frames"])
        self.proj = nn.Linear(int(spec["n_features"]), hidden_size)
        self.positions = nn.Parameter(torch.randn(self.max_frames, hidden_size) * 0.02)
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
        # the processor pads/crops to `frames` already; slicing guards the position table
        x, mask = x[..., : self.max_frames], mask[:, : self.max_frames].bool()
        z = ((x.float() - self.mean) / self.std).masked_fill(~mask.unsqueeze(1), 0.0)
        h = self.dropout(self.proj(z.transpose(1, 2)) + self.positions[: x.shape[-1]])
        present = mask.any(dim=1, keepdim=True)
        # rows with no real frame would softmax over nothing (NaN); let them attend to padding,
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
