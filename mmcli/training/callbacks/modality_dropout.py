"""Modality dropout: hide whole inputs for random rows while training, so the fused model
learns to cope with any subset of modalities (and the missing embeddings get trained)."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.training.callbacks.base import Callback


def drop_modalities(batch: dict[str, torch.Tensor], inputs: list[str], probability: float) -> dict[str, torch.Tensor]:
    """Return ``batch`` with each input's mask cleared for a random ``probability`` of rows.

    A row never loses all of its present inputs: one of them (chosen at random) is kept.
    Uses the global torch RNG, which checkpoints save, so resumed runs drop the same rows.
    """
    if probability <= 0 or len(inputs) < 2:
        return batch
    masks = [batch[f"{name}_mask"] for name in inputs]
    rows = masks[0].shape[0]
    present = torch.stack([m.flatten(1).any(dim=1) for m in masks], dim=1)  # [B, M]
    drop = (torch.rand(rows, len(inputs)) < probability).to(present.device) & present
    emptied = present.any(dim=1) & ~(present & ~drop).any(dim=1)
    if emptied.any():
        # keep one random present input for rows that would lose everything
        scores = torch.rand(rows, len(inputs)).to(present.device).masked_fill(~present, -1.0)
        keep = torch.nn.functional.one_hot(scores.argmax(dim=1), len(inputs)).bool()
        drop = drop & ~(keep & emptied.unsqueeze(1))
    out = dict(batch)
    for index, name in enumerate(inputs):
        if drop[:, index].any():
            mask = batch[f"{name}_mask"]
            out[f"{name}_mask"] = mask & ~drop[:, index].view(-1, *([1] * (mask.dim() - 1)))
    return out


class ModalityDropout(Callback):
    """``training.modality_dropout``: a batch transform, first of the transforms."""

    order = 10

    def __init__(self, inputs: list[str], probability: float) -> None:
        self.inputs, self.probability = list(inputs), probability

    def transform_batch(self, batch: dict[str, torch.Tensor], run: Any) -> dict[str, torch.Tensor]:
        return drop_modalities(batch, self.inputs, self.probability)
