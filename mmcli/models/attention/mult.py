"""MulT-style directional cross-modal transformers (Tsai et al. 2019) for every ordered pair of inputs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmcli.models.attention._common import (AttentionBlockSettings, check_heads, cross_attend, feed_forward, repool,
                                            zero_padding)
from mmcli.models.outputs import EncoderOutput
from mmcli.registries import ATTENTIONS


class MulTConfig(AttentionBlockSettings):
    type: Literal["mult"] = "mult"


class _CrossLayer(nn.Module):
    """One pre-LayerNorm cross-modal layer (target <- source):
    ``z = z + Drop(MHA(LN_q(z), LN_k(s), LN_k(s)))``, ``z = z + Drop(FFN(LN(z)))``."""

    def __init__(self, hidden_size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(hidden_size)
        self.norm_keys = nn.LayerNorm(hidden_size)
        self.attention = nn.MultiheadAttention(hidden_size, heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(hidden_size)
        self.ffn = feed_forward(hidden_size, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, z: Tensor, source: Tensor, source_mask: Tensor,
                need_weights: bool) -> tuple[Tensor, Tensor | None]:
        attended, weights = cross_attend(self.attention, self.norm_query(z), self.norm_keys(source), source_mask,
                                         need_weights)
        z = z + self.dropout(attended)
        return z + self.dropout(self.ffn(self.norm_ffn(z))), weights


@ATTENTIONS.register("mult", MulTConfig)
class MulTAttention(nn.Module):
    """For every ordered pair ``t <- s`` of distinct inputs, a stack of ``layers`` cross-modal layers in
    which ``t``'s tokens (queries) attend to ``s``'s tokens (keys/values, always the incoming ones, as
    in MulT); ``delta_{t<-s} = CM_{t<-s}(x_t, x_s) - x_t``. Each target's new tokens are
    ``x_t + mean_{s present in the row} delta_{t<-s}``: a source missing for a row contributes
    nothing to that row (the mean is over the present sources; no present source = no change).

    ``M (M - 1)`` blocks for M inputs (12 for four inputs), each ``O(B T_t T_s D)`` attention plus an FFN
    over ``T_t``. Outputs keep the inputs' shapes and masks: padded tokens are zero, ``pooled`` is the
    masked mean of the new tokens, or the incoming pooled (the learned "missing" vector) where the
    target itself is missing. A single input passes through unchanged.

    With ``keep_attention = True``, ``last_attention["t<-s"]`` holds ``[layers, B, H, T_t, T_s]``.

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``tokens [B, T_m, D]``, ``mask [B, T_m]``, ``pooled [B, D]``).
    Returns:
        input name -> ``EncoderOutput`` with the same shapes and masks.
    """

    def __init__(self, config: MulTConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        check_heads("mult", config.heads, hidden_size)
        self.names = sorted(input_names)
        self.pairs = [(t, s) for t in self.names for s in self.names if s != t]
        # a list indexed like self.pairs: names joined into module keys could collide
        self.blocks = nn.ModuleList(
            nn.ModuleList(_CrossLayer(hidden_size, config.heads, config.dropout) for _ in range(config.layers))
            for _ in self.pairs
        )
        self.keep_attention = False
        self.last_attention: dict[str, Tensor] = {}

    def forward(self, outputs: dict[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        if not self.pairs:
            return dict(outputs)
        tokens = {name: zero_padding(outputs[name]) for name in self.names}
        deltas: dict[str, Tensor] = {name: torch.zeros_like(tokens[name]) for name in self.names}
        counts: dict[str, Tensor] = {name: tokens[name].new_zeros(tokens[name].shape[0]) for name in self.names}
        keep = self.keep_attention
        attention: dict[str, Tensor] = {}
        for (target, source), block in zip(self.pairs, self.blocks):
            z, weights = tokens[target], []
            for layer in block:
                z, w = layer(z, tokens[source], outputs[source].mask, keep)
                weights.append(w)
            present = outputs[source].present  # [B]: a missing source adds nothing to that row
            deltas[target] = deltas[target] + (z - tokens[target]).masked_fill(~present.view(-1, 1, 1), 0.0)
            counts[target] = counts[target] + present.to(counts[target].dtype)
            if keep:
                attention[f"{target}<-{source}"] = torch.stack(weights)
        if keep:
            self.last_attention = attention
        result = {}
        for name in self.names:
            mean = deltas[name] / counts[name].clamp(min=1.0).view(-1, 1, 1)
            result[name] = repool(outputs[name], tokens[name] + mean)
        return result
