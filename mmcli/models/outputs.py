"""Encoder output container and masking helpers shared by encoders and fusions."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class EncoderOutput:
    """What every encoder returns.

    Attributes:
        tokens: ``[B, T, D]`` per-position features; positions with ``mask`` False are zero.
        mask: ``[B, T]`` bool, True where the position holds real data.
        pooled: ``[B, D]`` one vector per row; the learned "missing" vector where a row has no real position.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    @property
    def present(self) -> Tensor:
        """``[B]`` bool: the row has at least one real position (the modality is present)."""
        return self.mask.any(dim=1)


@dataclass
class LateVectors:
    """Late fusion: ``vectors [B, M, D]`` one per input (``names``, sorted) and the presence weights
    ``[B, M]`` that combine per-input predictions (missing inputs weigh 0)."""

    names: list[str]
    vectors: Tensor
    weights: Tensor


@dataclass
class FusionOutput:
    """What every fusion returns.

    Attributes:
        fused: ``[B, D']`` the fused vector (``D'`` is ``hidden_size`` unless the fusion declares a
            ``fused_size``; with per-task vectors, their mean; with late fusion, the presence-weighted mean
            of the per-input vectors).
        task_vectors: task name -> ``[B, D]``, for a fusion that fuses once per task.
        late: per-input vectors and weights, for a fusion whose tasks combine per-input predictions.
    """

    fused: Tensor
    task_vectors: dict[str, Tensor] = field(default_factory=dict)
    late: LateVectors | None = None


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean over real positions: ``tokens [B, T, D]``, ``mask [B, T]`` -> ``[B, D]`` (zeros for empty rows)."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    # clamp: an all-padding row divides 0 by 1 instead of producing NaN
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over positions where ``mask`` is True; rows with no True position get all zeros.

    A finite fill (not -inf) keeps all-masked rows free of NaN, which would poison gradients.
    """
    filled = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
    return torch.softmax(filled, dim=dim) * mask.to(logits.dtype)


def finish(tokens: Tensor, mask: Tensor, pooled: Tensor, missing: Tensor) -> EncoderOutput:
    """Zero padded tokens and swap in the learned ``missing`` vector ``[D]`` for rows without data.

    Args:
        tokens: ``[B, T, D]``; mask: ``[B, T]`` bool; pooled: ``[B, D]``; missing: ``[D]``.
    """
    tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
    present = mask.any(dim=1, keepdim=True)
    pooled = torch.where(present, pooled, missing.to(pooled.dtype).expand_as(pooled))
    return EncoderOutput(tokens=tokens, mask=mask, pooled=pooled)
