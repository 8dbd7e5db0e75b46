"""Image encoder: a small Vision Transformer trained from scratch (patches + learned positions)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.errors import RecipeError
from mmcli.models.encoders.image import PixelNormalize
from mmcli.models.encoders._sequence import MaskedTransformer
from mmcli.models.outputs import EncoderOutput, finish
from mmcli.registries import ENCODERS


class ImageViTConfig(EncoderSettings):
    type: Literal["vit"] = "vit"
    patch_size: int = Field(4, ge=1, description="square patch side in pixels (images are zero-padded to a multiple)")
    layers: int = Field(2, ge=1, description="Transformer encoder layers")
    heads: int = Field(4, ge=1, description="attention heads; must divide model.hidden_size")
    dropout: float = Field(0.1, ge=0, lt=1)
    pooling: Literal["cls", "mean"] = Field("cls", description="a learned [CLS] token, or the mean of the patch tokens")


@ENCODERS["image"].register("vit", ImageViTConfig)
class ImageViTEncoder(nn.Module):
    """Patch embedding (a strided conv) + learned positions + a pre-norm Transformer encoder.

    Spec keys: ``channels``, ``size``, ``mean``, ``std``.

    Args (forward):
        x: ``[B, C, S, S]`` uint8. mask: ``[B, 1]`` bool, False where the image is missing.
    Returns:
        ``EncoderOutput(tokens [B, P, D], mask [B, P], pooled [B, D])``, ``P = ceil(S / patch_size)**2``.
    """

    def __init__(self, config: ImageViTConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        if hidden_size % config.heads:
            raise RecipeError(f"image encoder vit: heads ({config.heads}) must divide hidden_size ({hidden_size})")
        self.patch_size = config.patch_size
        self.grid = math.ceil(int(spec["size"]) / config.patch_size)
        self.normalize = PixelNormalize(spec["mean"], spec["std"])
        self.patches = nn.Conv2d(int(spec["channels"]), hidden_size, config.patch_size, stride=config.patch_size)
        self.positions = nn.Parameter(torch.randn(self.grid**2, hidden_size) * 0.02)
        self.body = MaskedTransformer(hidden_size, config.heads, config.layers, config.dropout, config.pooling)
        self.dropout = nn.Dropout(config.dropout)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def embed(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised ``[n, C, S, S]`` -> ``(tokens [n, P, D], pooled [n, D])``."""
        pad = self.grid * self.patch_size - pixels.shape[-1]
        if pad:
            pixels = F.pad(pixels, (0, pad, 0, pad))
        h = self.patches(pixels).flatten(2).transpose(1, 2)  # [n, D, g, g] -> [n, P, D]
        return self.body(self.dropout(h + self.positions.to(h.dtype)))

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        b = x.shape[0]
        present = mask.bool().reshape(b, -1).any(dim=1)
        hidden = self.missing.shape[0]
        tokens = x.new_zeros((b, self.grid**2, hidden), dtype=torch.float32)
        pooled = x.new_zeros((b, hidden), dtype=torch.float32)
        if present.any():  # missing images are skipped: no compute, no effect on anything
            rows = present.nonzero(as_tuple=True)[0]
            t, p = self.embed(self.normalize(x[present]))
            tokens, pooled = tokens.to(t.dtype).index_put((rows,), t), pooled.to(p.dtype).index_put((rows,), p)
        token_mask = present.unsqueeze(1).expand(-1, tokens.shape[1])
        return finish(tokens, token_mask, pooled, self.missing)
