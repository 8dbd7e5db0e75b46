"""Flamingo's gated cross-attention: before every ``every``-th layer of a (frozen) language model, the
text attends to the media tokens, ``x + tanh(a) * attention(x, media)`` then ``x + tanh(b) * ffn(x)``, with
``a`` and ``b`` starting at 0 so the model begins exactly as the pretrained language model."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.settings import Settings

LAYER_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers")


class CrossAttentionSettings(Settings):
    every: int = Field(1, ge=1, description="a gated cross-attention layer before every N-th language-model layer")
    heads: int = Field(4, ge=1, description="its attention heads; must divide the language model's width")


class MediaHolder:
    """The media tokens the cross-attention layers read during one forward (or one generation)."""

    def __init__(self) -> None:
        self.tokens: Tensor | None = None
        self.mask: Tensor | None = None

    def set(self, tokens: Tensor, mask: Tensor) -> None:
        self.tokens, self.mask = tokens, mask


class GatedCrossAttention(nn.Module):
    def __init__(self, width: int, heads: int, holder: MediaHolder) -> None:
        super().__init__()
        self.holder = holder
        self.norm = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.attention_gate = nn.Parameter(torch.zeros(()))
        self.norm_ff = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.ff_gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        media, mask = self.holder.tokens, self.holder.mask
        if media is None:
            return x
        present = mask.any(dim=1, keepdim=True)
        keys = media.to(x.dtype)
        # rows without any media attend to a zero token whose output the gate then scales (never NaN)
        keys_mask = torch.cat([mask, ~present], dim=1)
        keys = torch.cat([keys, torch.zeros_like(keys[:, :1])], dim=1)
        attended, _ = self.attention(self.norm(x), keys, keys, key_padding_mask=~keys_mask, need_weights=False)
        x = x + torch.tanh(self.attention_gate) * attended * present.unsqueeze(-1).to(x.dtype)
        return x + torch.tanh(self.ff_gate) * self.ff(self.norm_ff(x))


class WithCrossAttention(nn.Module):
    """A language-model layer with a gated cross-attention block before it (same call signature)."""

    def __init__(self, layer: nn.Module, cross: GatedCrossAttention) -> None:
        super().__init__()
        self.cross, self.layer = cross, layer

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.layer(self.cross(hidden_states), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # the layer's own attributes (attention_type, ...) as the model reads them
            return getattr(super().__getattr__("layer"), name)


def add_cross_attention(lm: nn.Module, width: int, settings: CrossAttentionSettings) -> MediaHolder:
    """Insert gated cross-attention before every ``settings.every``-th decoder layer of ``lm``; returns the
    holder through which the decoder hands them the media."""
    if width % settings.heads:
        raise RecipeError(f"decoder.cross_attention.heads ({settings.heads}) must divide the model's width ({width})")
    layers = None
    for path in LAYER_PATHS:
        found: Any = lm
        for part in path.split("."):
            found = getattr(found, part, None)
        if isinstance(found, nn.ModuleList):
            layers = found
            break
    if layers is None:
        raise RecipeError("decoder: cross_attention conditioning cannot find this language model's layers",
                          hint="use conditioning: placeholders")
    holder = MediaHolder()
    for index in range(0, len(layers), settings.every):
        layers[index] = WithCrossAttention(layers[index], GatedCrossAttention(width, settings.heads, holder))
    return holder
