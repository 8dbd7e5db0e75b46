"""Modality noise: corrupt whole inputs of random training rows at a random strength, so the
fused model learns to lean on the other inputs when one of them is degraded rather than gone.

Modality dropout teaches the model what to do when an input is *absent*; a corrupted input is
still marked present, and without this the model trusts it as much as a clean one.
"""

from __future__ import annotations

from typing import Any

import torch

from mmcli.data.corruption import corrupt_rows
from mmcli.training.callbacks.base import Callback


def corrupt_modalities(batch: dict[str, torch.Tensor], inputs: dict[str, tuple[str, dict]],
                       probability: float) -> dict[str, torch.Tensor]:
    """Return ``batch`` with each input (``name -> (modality, spec)``) corrupted for a random
    ``probability`` of rows, at a level drawn uniformly from [0, 1) per row.

    Uses the global torch RNG, which checkpoints save, so resumed runs corrupt the same rows.
    """
    if probability <= 0:
        return batch
    for name, (modality, spec) in inputs.items():
        rows = batch[f"{name}_mask"].shape[0]
        chosen = torch.rand(rows) < probability
        levels = torch.rand(rows) * chosen
        if chosen.any():
            batch = corrupt_rows(batch, name, modality, spec, levels)
    return batch


class ModalityNoise(Callback):
    """``training.modality_noise``: a batch transform, after the others (so it never corrupts the
    copies other transforms add)."""

    order = 30

    def __init__(self, inputs: dict[str, tuple[str, dict]], probability: float) -> None:
        self.inputs, self.probability = inputs, probability

    def transform_batch(self, batch: dict[str, torch.Tensor], run: Any) -> dict[str, torch.Tensor]:
        return corrupt_modalities(batch, self.inputs, self.probability)


def noise_inputs(recipe: Any, preprocessing: dict | None, needed_by: str) -> dict[str, tuple[str, dict]]:
    """input -> (modality, fitted spec): what the noise model needs (the noise scale of each input)."""
    if preprocessing is None:
        raise ValueError(f"{needed_by} needs the preprocessing specs (the noise scale of each input)")
    return {name: (cfg.modality, preprocessing["inputs"][name]["spec"]) for name, cfg in recipe.inputs.items()}
