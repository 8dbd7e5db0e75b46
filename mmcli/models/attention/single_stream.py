"""Single-stream cross-modal attention: all modalities' tokens in one transformer (VisualBERT/UNITER style)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mmcli.models.attention._common import AttentionBlockSettings, check_heads, repool, safe_padding, zero_padding
from mmcli.models.outputs import EncoderOutput
from mmcli.registries import ATTENTIONS


class SingleStreamConfig(AttentionBlockSettings):
    type: Literal["single_stream"] = "single_stream"


@ATTENTIONS.register("single_stream", SingleStreamConfig)
class SingleStreamAttention(nn.Module):
    """One ``nn.TransformerEncoder`` (pre-LayerNorm, GELU, FFN 4D, final LayerNorm) over the
    concatenated token sequences of all inputs (sorted name order), each token plus a learned
    modality-type embedding, so every token attends to every real token of every modality.

    Padded and missing positions are excluded as keys (``key_padding_mask``); a row with no real
    token at all is run unmasked (finite) and its tokens are zeroed afterwards. The sequence is
    split back per input: padded tokens are zero, ``pooled`` is the masked mean of the input's new
    tokens, or the incoming pooled (the learned "missing" vector) where the input is missing.
    Cost: attention over ``T = sum_m T_m`` positions, ``O(B T^2 D)`` per layer.

    With ``keep_attention = True``, ``last_attention[name]`` holds ``[layers, B, H, T_name, T]``:
    the attention of that input's tokens (queries) over the whole joint sequence (keys, inputs
    concatenated in sorted name order). The weights are recomputed for inspection (the fused
    kernel does not return them), so keeping them costs one extra attention per layer.

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``tokens [B, T_m, D]``, ``mask [B, T_m]``, ``pooled [B, D]``).
    Returns:
        input name -> ``EncoderOutput`` with the same shapes and masks.
    """

    def __init__(self, config: SingleStreamConfig, input_names: list[str], hidden_size: int) -> None:
        super().__init__()
        check_heads("single_stream", config.heads, hidden_size)
        self.names = sorted(input_names)
        self.modality = nn.Parameter(torch.randn(len(self.names), hidden_size) * 0.02)  # type embeddings
        layer = nn.TransformerEncoderLayer(hidden_size, config.heads, 4 * hidden_size, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, norm=nn.LayerNorm(hidden_size),
                                             enable_nested_tensor=False)
        self.keep_attention = False
        self.last_attention: dict[str, torch.Tensor] = {}

    def forward(self, outputs: dict[str, EncoderOutput]) -> dict[str, EncoderOutput]:
        sizes = [outputs[name].tokens.shape[1] for name in self.names]
        tokens = torch.cat([zero_padding(outputs[name]) + self.modality[i].to(outputs[name].tokens.dtype)
                            for i, name in enumerate(self.names)], dim=1)  # [B, T, D]
        mask = torch.cat([outputs[name].mask for name in self.names], dim=1)  # [B, T]
        padding, _ = safe_padding(mask)
        if self.keep_attention:
            tokens, weights = self._encode_keeping_weights(tokens, padding)
            per_input = weights.split(sizes, dim=3)  # [layers, B, H, T_m, T]
            self.last_attention = {name: w for name, w in zip(self.names, per_input)}
        else:
            tokens = self.encoder(tokens, src_key_padding_mask=padding)
        parts = tokens.split(sizes, dim=1)
        return {name: repool(outputs[name], part) for name, part in zip(self.names, parts)}

    def _encode_keeping_weights(self, tokens: torch.Tensor, padding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as ``self.encoder(tokens, src_key_padding_mask=padding)``, also returning ``[layers, B, H, T, T]``."""
        weights = []
        for layer in self.encoder.layers:
            normed = layer.norm1(tokens)  # norm_first: the layer's attention reads norm1(x)
            _, w = layer.self_attn(normed, normed, normed, key_padding_mask=padding, need_weights=True,
                                   average_attn_weights=False)
            weights.append(w)
            tokens = layer(tokens, src_key_padding_mask=padding)
        if self.encoder.norm is not None:
            tokens = self.encoder.norm(tokens)
        return tokens, torch.stack(weights)
