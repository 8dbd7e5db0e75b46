"""Projectors: an input's tokens ``[B, T, D]`` -> tokens in a language model's embedding space ``[B, N, H]``.
``mlp`` (LLaVA-1.5: Linear, GELU, Linear), ``linear``, ``patch_merge`` (neighbouring tokens concatenated
then an MLP: N = T / merge, 2-D neighbourhoods on a square grid as in pixel shuffle) and ``perceiver``
(Flamingo's perceiver resampler: a fixed number of learned latents cross-attending to the tokens)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.settings import Settings


class ProjectorSettings(Settings):
    type: Literal["mlp", "linear", "patch_merge", "perceiver"] = Field(
        "mlp", description="mlp (LLaVA), linear, patch_merge (fewer tokens: merge neighbours), perceiver (Flamingo's "
                           "resampler: a fixed number of latents)")
    merge: int = Field(4, ge=2, description="patch_merge: tokens merged into one (a square number merges 2-D "
                                            "neighbourhoods when the tokens form a square grid)")
    latents: int = Field(16, ge=1, description="perceiver: the number of output tokens")
    layers: int = Field(2, ge=1, description="perceiver: cross-attention layers")
    heads: int = Field(4, ge=1, description="perceiver: attention heads; must divide the input width")


def build_projector(settings: ProjectorSettings, width: int, out_width: int) -> nn.Module:
    if settings.type == "linear":
        return TokenMap(nn.Linear(width, out_width))
    if settings.type == "mlp":
        return TokenMap(nn.Sequential(nn.Linear(width, out_width), nn.GELU(), nn.Linear(out_width, out_width)))
    if settings.type == "patch_merge":
        return PatchMerge(settings.merge, width, out_width)
    return PerceiverResampler(width, out_width, settings.latents, settings.layers, settings.heads)


class TokenMap(nn.Module):
    """The same map on every token; padded tokens stay padded."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.net(tokens), mask


class PatchMerge(nn.Module):
    """``merge`` neighbouring tokens concatenated into one, then Linear, GELU, Linear: ``[B, T, D] -> [B,
    ceil(T / merge), H]``. With a square ``merge`` and a square grid of tokens whose side it divides, the
    neighbours are 2-D blocks (pixel shuffle); otherwise consecutive runs (a padded tail is masked)."""

    def __init__(self, merge: int, width: int, out_width: int) -> None:
        super().__init__()
        self.merge = merge
        self.net = nn.Sequential(nn.Linear(merge * width, out_width), nn.GELU(), nn.Linear(out_width, out_width))

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b, t, d = tokens.shape
        side, block = math.isqrt(t), math.isqrt(self.merge)
        if side * side == t and block * block == self.merge and side % block == 0:
            grid = tokens.view(b, side // block, block, side // block, block, d).permute(0, 1, 3, 2, 4, 5)
            merged = grid.reshape(b, (side // block) ** 2, self.merge * d)
            cells = mask.view(b, side // block, block, side // block, block).permute(0, 1, 3, 2, 4)
            return self.net(merged), cells.reshape(b, -1, self.merge).any(dim=-1)
        pad = -t % self.merge
        tokens = nn.functional.pad(tokens, (0, 0, 0, pad))
        mask = nn.functional.pad(mask, (0, pad), value=False)
        return (self.net(tokens.reshape(b, -1, self.merge * d)),
                mask.reshape(b, -1, self.merge).any(dim=-1))


class PerceiverResampler(nn.Module):
    """Flamingo's resampler: ``latents`` learned queries; each layer lets them attend to the tokens and to
    themselves (keys ``[x; latents]``), then a feed-forward block, both residual and pre-normed; the result
    is mapped to the language model's width. Padded tokens are never attended to; a row without tokens
    (a missing input) is masked out entirely."""

    def __init__(self, width: int, out_width: int, latents: int, layers: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"perceiver: heads ({heads}) must divide the input width ({width})")
        self.latents = nn.Parameter(torch.randn(latents, width) * 0.02)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "norm_x": nn.LayerNorm(width), "norm_latents": nn.LayerNorm(width),
            "attention": nn.MultiheadAttention(width, heads, batch_first=True),
            "norm_ff": nn.LayerNorm(width),
            "ff": nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)),
        }) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, out_width)

    def forward(self, tokens: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        b = tokens.shape[0]
        latents = self.latents.to(tokens.dtype).expand(b, -1, -1)
        present = mask.any(dim=1)
        # a row with no token attends to its latents only (never to nothing, which is NaN)
        keys_mask = torch.cat([mask & present.unsqueeze(1), torch.ones_like(mask[:, :1]).expand(b, latents.shape[1])], 1)
        for layer in self.layers:
            query = layer["norm_latents"](latents)
            keys = torch.cat([layer["norm_x"](tokens), query], dim=1)
            attended, _ = layer["attention"](query, keys, keys, key_padding_mask=~keys_mask, need_weights=False)
            latents = latents + attended
            latents = latents + layer["ff"](layer["norm_ff"](latents))
        return self.out(self.norm(latents)), present.unsqueeze(1).expand(b, latents.shape[1])
