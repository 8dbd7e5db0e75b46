"""Data augmentation (``inputs.NAME.augment``): a batch transform on the training batches only, on the
batch's device. Validation, evaluation and prediction never see it (they do not run batch transforms).

Each input's random parameters come from a generator seeded by (run seed, input, epoch, position of the
batch in the epoch, process): the trainer's checkpoints save that position, so a resumed run augments
every batch exactly as the uninterrupted run did, whatever else drew from torch's global generator, and
the processes of a data-parallel run augment their shares of a batch differently.
"""

from __future__ import annotations

from typing import Any

import torch

from mmcli.errors import RecipeError
from mmcli.models.augmentation import ImageAugment, SpecAugment, augment_images, spec_augment
from mmcli.models.backbone import PRECOMPUTED
from mmcli.models.seeded import component_seed
from mmcli.training.callbacks.base import Callback


class Augmentation(Callback):
    """``inputs`` maps an input to ``(modality, augment settings, fitted spec)``; audio needs the spec (its
    feature mean fills the masks)."""

    order = 5  # first: dropout, corrupted copies and noise then act on the augmented rows

    def __init__(self, inputs: dict[str, tuple[str, Any, dict | None]], seed: int) -> None:
        self.inputs, self.seed = inputs, seed
        self.fills: dict[str, torch.Tensor] = {}
        for name, (modality, settings, spec) in inputs.items():
            if isinstance(settings, SpecAugment):
                if spec is None:
                    raise ValueError(f"inputs.{name}.augment needs the preprocessing spec (the feature mean)")
                mean = torch.as_tensor(spec["mean"], dtype=torch.float32)
                self.fills[name] = mean.view(-1, 1) if mean.dim() else mean  # one per band, or one for all

    def generator(self, name: str, run: Any) -> torch.Generator:
        state = run.state
        key = f"augment/{name}/{state['epoch']}/{state['batch']}/{run.accelerator.process_index}"
        return torch.Generator().manual_seed(component_seed(self.seed, key))

    def transform_batch(self, batch: dict[str, torch.Tensor], run: Any) -> dict[str, torch.Tensor]:
        out = dict(batch)
        for name, (_, settings, _) in self.inputs.items():
            if name + PRECOMPUTED in batch:
                raise RecipeError(f"inputs.{name}.augment: the input's frozen encoder runs once per row before "
                                  "training, so augmentation would never reach it",
                                  hint=f"remove inputs.{name}.augment, or train the encoder")
            generator = self.generator(name, run)
            if isinstance(settings, ImageAugment):
                out[name] = augment_images(batch[name], settings, generator)
            elif isinstance(settings, SpecAugment):
                out[name] = spec_augment(batch[name], batch[f"{name}_mask"], settings, self.fills[name], generator)
        return out


def augmented_inputs(recipe: Any, preprocessing: dict | None) -> dict[str, tuple[str, Any, dict | None]]:
    """input -> (modality, augment settings, fitted spec or None) for every input with ``augment`` set."""
    specs = (preprocessing or {}).get("inputs", {})
    return {name: (cfg.modality, cfg.augment, specs.get(name, {}).get("spec"))
            for name, cfg in recipe.inputs.items() if getattr(cfg, "augment", None) is not None}
