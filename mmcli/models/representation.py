"""What the backbone hands to the objectives: every input's encoding, the fused vector(s) and the
shared-space projections, for one batch."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from mmcli.models.outputs import EncoderOutput, FusionOutput, LateVectors

_LATE = object()  # key of late fusion's dropped-out vectors (never a name)
FUSED = "fused"  # what objectives call the fused vector when they name "an input or the fused vector"


class Representation:
    """One batch as the backbone sees it.

    Attributes:
        encoded: input -> ``EncoderOutput`` (``tokens [B, T, D]``, ``mask [B, T]``, ``pooled [B, D]``),
            the encoders' own (what a single-input head or a contrastive loss reads).
        inputs: input -> ``EncoderOutput`` as the fusion read them (after the cross-modal attention
            block; the same objects as ``encoded`` without one).
        fused: ``[B, D]`` the fused vector (with per-task fusion, the mean of the tasks' vectors); no
            dropout: this is the embedding ``encode`` writes.
        shared: input -> ``[B, P]`` projection into the shared space (empty without
            ``model.shared_space``).
        task_vectors: objective name -> ``[B, D]``, with a fusion that fuses once per task.
        late: per-input vectors and weights, with a fusion that combines predictions.

    The backbone hands over its fusion as ``fuse`` (returning a :class:`FusionOutput`), run when one of
    those three is first read: objectives that read only the inputs (contrastive, adversarial) cost no
    fusion.
    """

    def __init__(self, encoded: dict[str, EncoderOutput], inputs: dict[str, EncoderOutput],
                 fusion: FusionOutput | None = None, shared: dict[str, Tensor] | None = None,
                 dropout: Callable[[Tensor], Tensor] | None = None,
                 fuse: Callable[[], FusionOutput] | None = None) -> None:
        self.encoded, self.inputs, self.shared, self.dropout = encoded, inputs, shared or {}, dropout
        self._fuse = fuse
        self._fusion = fusion
        self._dropped: dict[object, Tensor] = {}

    @property
    def fusion(self) -> FusionOutput:
        """What the fusion made of the inputs (computed on first read)."""
        if self._fusion is None:
            if self._fuse is None:
                raise ValueError("this model has no fusion: none of its objectives reads the fused vector")
            self._fusion = self._fuse()
        return self._fusion

    @property
    def fused(self) -> Tensor:
        return self.fusion.fused

    @property
    def task_vectors(self) -> dict[str, Tensor]:
        return self.fusion.task_vectors

    @property
    def late(self) -> LateVectors | None:
        return self.fusion.late

    def fused_for(self, name: str) -> Tensor:
        """``[B, D]`` the vector objective ``name`` reads: its own with per-task fusion, else the fused
        vector; after ``model.dropout``, one mask per vector shared by every objective that reads it.
        The mask is drawn when the vector is first read, so random draws happen in the order the
        objectives read them (seeded runs depend on that order)."""
        key = name if name in self.task_vectors else None
        if key not in self._dropped:
            vector = self.task_vectors[key] if key is not None else self.fused
            self._dropped[key] = self.dropout(vector) if self.dropout is not None else vector
        return self._dropped[key]

    def embedding(self, name: str) -> tuple[Tensor, Tensor]:
        """(``[B, P]`` embedding, ``[B]`` bool present) of input ``name``: its shared-space projection
        when the model has a shared space, else its pooled vector; ``"fused"``: the fused vector (every
        row present)."""
        if name == FUSED:
            return self.fused, torch.ones(len(self.fused), dtype=torch.bool, device=self.fused.device)
        vector = self.shared[name] if name in self.shared else self.encoded[name].pooled
        return vector, self.encoded[name].present

    def late_hidden(self) -> Tensor:
        """``[B, M, D]`` late fusion's per-input vectors after ``model.dropout`` (one mask for all heads)."""
        if self.late is None:
            raise ValueError("late_hidden: this representation was not made by a fusion that combines predictions")
        if _LATE not in self._dropped:
            vectors = self.late.vectors
            self._dropped[_LATE] = self.dropout(vectors) if self.dropout is not None else vectors
        return self._dropped[_LATE]
