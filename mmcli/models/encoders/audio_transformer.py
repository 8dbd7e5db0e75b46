"""Audio encoder: a Transformer over log-mel/MFCC frames (one token per frame)."""

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


class AudioTransformerConfig(EncoderSettings):
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
        self.body = MaskedTransformer(hidden_size, config.heads, config.layers, config.dropout, config.pooling)
        self.dropout = nn.Dropout(config.dropout)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        # the processor pads/crops to `frames` already; slicing guards the position table
        x, mask = x[..., : self.max_frames], mask[:, : self.max_frames].bool()
        z = ((x.float() - self.mean) / self.std).masked_fill(~mask.unsqueeze(1), 0.0)
        h, pooled = self.body(self.dropout(self.proj(z.transpose(1, 2)) + self.positions[: x.shape[-1]]), mask)
        return finish(h, mask, pooled, self.missing)
