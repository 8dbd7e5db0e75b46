"""Pieces shared by the cross-modal attention blocks: settings, NaN-safe cross-attention, re-pooling."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput, masked_mean
from mmcli.settings import Settings


class AttentionBlockSettings(Settings):
    """Fields every attention block has (each block's config adds its ``type`` tag)."""

    layers: int = Field(1, ge=1, description="stacked attention layers")
    heads: int = Field(4, ge=1, description="attention heads; must divide model.hidden_size")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout on attention weights and residual branches")


def check_heads(kind: str, heads: int, hidden_size: int) -> None:
    if hidden_size % heads:
        raise RecipeError(f"model.attention.heads: {kind} heads ({heads}) "
                          f"must divide model.hidden_size ({hidden_size})")


def feed_forward(hidden_size: int, dropout: float) -> nn.Sequential:
    """Position-wise ``Linear(D, 4D) -> GELU -> Dropout -> Linear(4D, D)``."""
    return nn.Sequential(nn.Linear(hidden_size, 4 * hidden_size), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(4 * hidden_size, hidden_size))


def safe_padding(mask: Tensor) -> tuple[Tensor, Tensor]:
    """``key_padding_mask`` for ``mask [B, T]`` (True = real) that never masks a whole row.

    Returns ``(padding [B, T], has_keys [B])``: a row with no real key attends over all of its
    (zero) positions instead, which is finite; callers zero that row's attention output with
    ``has_keys``. (All keys masked makes the softmax 0/0 = NaN, which would also poison gradients.)
    """
    has_keys = mask.any(dim=1)
    return ~mask & has_keys.unsqueeze(1), has_keys


def cross_attend(attention: nn.MultiheadAttention, query: Tensor, keys: Tensor, key_mask: Tensor,
                 need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """``attention(query, keys, keys)`` over the real keys only.

    Args:
        query: ``[B, Tq, D]``; keys: ``[B, Tk, D]``; key_mask: ``[B, Tk]`` bool, True = real.
    Returns:
        ``(out [B, Tq, D], weights [B, H, Tq, Tk] or None)``; rows without any real key get zeros
        (output and weights).
    """
    padding, has_keys = safe_padding(key_mask)
    out, weights = attention(query, keys, keys, key_padding_mask=padding, need_weights=need_weights,
                             average_attn_weights=False)
    keep = has_keys.view(-1, 1, 1).to(out.dtype)
    out = out * keep
    if weights is not None:
        weights = weights * keep.unsqueeze(1)
    return out, weights


def zero_padding(out: EncoderOutput) -> Tensor:
    """The tokens with padded positions set to zero, whatever they held."""
    return out.tokens.masked_fill(~out.mask.unsqueeze(-1), 0.0)


def repool(original: EncoderOutput, tokens: Tensor) -> EncoderOutput:
    """New ``EncoderOutput`` with the original mask: padded tokens zeroed, ``pooled`` = masked mean of
    the new tokens where the row has any real position, the incoming pooled (the encoder's learned
    "missing" vector) where it has none."""
    mask = original.mask
    tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
    present = original.present.unsqueeze(-1)
    pooled = masked_mean(tokens, mask).to(original.pooled.dtype)
    pooled = pooled.where(present, original.pooled)
    return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)
