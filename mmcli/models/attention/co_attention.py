"""Two-stream co-attention (ViLBERT, Lu et al. 2019): two inputs attend to each other."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.attention._common import (AttentionBlockSettings, check_heads, cross_attend, feed_forward, repool,
                                            zero_padding)
from mmcli.models.outputs import EncoderOutput
from mmcli.registries import ATTENTIONS


class CoAttentionConfig(AttentionBlockSettings):
    type: Literal["co_attention"] = "co_attention"
    pair: list[str] | None = Field(None, min_length=2, max_length=2,
                                   description="the two input names that attend to each other "
                                               "(default: the first two input names, sorted); "
                                               "other inputs pass through")


class _CoLayer(nn.Module):
    """One stream's half of a co-attention layer (post-LayerNorm, as in ViLBERT/BERT):
    ``h = LN(x + Drop(MHA(x, y, y)))``, ``out = LN(h + Drop(FFN(h)))``."""

    def __init__(self, hidden_size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden_size, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.ffn = feed_forward(hidden_size, dropout)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor, y_mask: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        attended, weights = cross_attend(self.attention, x, y, y_mask, need_weights)
        h = self.norm1(x + self.dropout(attended))
        return self.norm2(h + self.dropout(self.ffn(h))), weights


@ATTENTIONS.register("co_attention", CoAttentionConfig)
class CoAttention(nn.Module):
    """ViLBERT-style co-attention between two inputs ``a`` and ``b`` (``pair``), ``layers`` times:
    ``a' = CoLayer_a(a; keys/values b)`` and ``b' = CoLayer_b(b; keys/values a)``, both computed from the
    previous layer's ``a`` and ``b`` (the streams swap keys, not weights). Other inputs pass through unchanged.

    Each stream's attention skips the other's padded positions (``key_padding_mask``); where the
    other input is missing for a row the cross-attention output for that row is zero (the
    residual, LayerNorm and FFN still apply). Outputs keep the inputs' shapes and masks: padded
    tokens are zero, ``pooled`` is the masked mean of the new tokens, or the incoming pooled
    (the learned "missing" vector) where the input itself is missing.

    With ``keep_attention = True``, ``last_attention`` holds ``{a: [layers, B, H, T_a, T_b],
    b: [layers, B, H, T_b, T_a]}`` (queries of the named stream over the other's tokens).

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``tokens [B, T_m, D]``, ``mask [B, T_m]``, ``pooled [B, D]``).
    Returns:
        input name -> ``EncoderOutput`` with the same shapes and masks.
    """

    def __init__(self, config: CoAttentionConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        check_heads("co_attention", config.heads, hidden_size)
        names = sorted(input_names)
        if len(names) < 2:
            raise RecipeError(f"model.attention: co_attention needs two inputs, the recipe has {len(names)}",
                              hint="use model.attention.type=single_stream, or no attention block")
        pair = list(config.pair) if config.pair is not None else names[:2]
        unknown = [name for name in pair if name not in names]
        if unknown:
            raise RecipeError(f"model.attention.pair: unknown input '{unknown[0]}' (inputs: {', '.join(names)})")
        if pair[0] == pair[1]:
            raise RecipeError(f"model.attention.pair: needs two different inputs, got '{pair[0]}' twice")
        self.pair = pair
        self.layers_a = nn.ModuleList(_CoLayer(hidden_size, config.heads, config.dropout) for _ in range(config.layers))
        self.layers_b = nn.ModuleList(_CoLayer(hidden_size, config.heads, config.dropout) for _ in range(config.layers))
        self.keep_attention = False
        self.last_attention: dict[str, Tensor] = {}

    def forward(self, outputs: dict[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        name_a, name_b = self.pair
        a, b = zero_padding(outputs[name_a]), zero_padding(outputs[name_b])
        mask_a, mask_b = outputs[name_a].mask, outputs[name_b].mask
        keep = self.keep_attention
        weights_a, weights_b = [], []
        for layer_a, layer_b in zip(self.layers_a, self.layers_b):
            new_a, w_a = layer_a(a, b, mask_b, keep)
            new_b, w_b = layer_b(b, a, mask_a, keep)
            a, b = new_a, new_b
            weights_a.append(w_a)
            weights_b.append(w_b)
        if keep:
            self.last_attention = {name_a: torch.stack(weights_a), name_b: torch.stack(weights_b)}
        result = dict(outputs)
        result[name_a] = repool(outputs[name_a], a)
        result[name_b] = repool(outputs[name_b], b)
        return result
