"""Masked feature regression for image, audio and video inputs (masked autoencoding, as in MAE and
masked-frame pretraining): hide random regions of the input, encode it again, and regress from each
hidden region's token what the region held.

The regions are the encoder's tokens: an image encoder's ``g x g`` grid of positions, an audio
encoder's frames (after its downsampling), a video encoder's frames. A region is hidden by setting it
to the input's mean (0 after normalisation). The target of a token is the normalised input averaged
over its region: per channel for an image, per feature for audio, per channel on a 4 x 4 grid for a
video frame. The loss is the squared error over hidden real tokens. An image encoder whose tokens are
not a square grid (a CLS token, a pretrained tower) cannot be used: the recipe is refused.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.errors import RecipeError
from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings, check_input_modality
from mmcli.registries import OBJECTIVES

VIDEO_GRID = 4  # a video frame's target: per channel on a 4 x 4 grid


class MaskedFeaturesConfig(ObjectiveSettings):
    type: Literal["masked_features"] = "masked_features"
    input: str = Field(description="an image, audio or video input")
    mask_ratio: float = Field(0.4, gt=0, lt=1, description="share of the input's regions hidden")

    def check(self, recipe: Any, name: str) -> None:
        check_input_modality(self.input, recipe, f"objectives.{name}.input", ("image", "audio", "video"),
                             " (masked_text for text)")


@OBJECTIVES.register("masked_features", MaskedFeaturesConfig)
class MaskedFeatures(Objective):
    reads_fusion = False  # one input's own tokens
    """Its validation loss (the masked error, with a fixed mask) is its measure; no metric of its own."""

    def __init__(self, config: MaskedFeaturesConfig, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.input, self.ratio = config.input, config.mask_ratio
        self.modality = context.inputs[config.input]
        spec = context.input_specs[config.input]
        shape = (-1, 1, 1) if self.modality in ("image", "video") else (-1, 1)
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).reshape(shape))
        width = {"image": int(spec.get("channels", 3)), "audio": int(spec.get("n_features", 1)),
                 "video": int(spec.get("channels", 3)) * VIDEO_GRID**2}[self.modality]
        self.head = nn.Linear(context.hidden_size, width)
        self._model: Any = None

    def attach(self, model: nn.Module) -> None:
        import weakref

        self._model = weakref.ref(model)

    def _normalised(self, x: Tensor) -> Tensor:
        scale = 255.0 if self.modality in ("image", "video") else 1.0
        return (x.float() / scale - self.mean) / self.std

    def _targets(self, x: Tensor, tokens: int) -> Tensor:
        """``[B, T, W]``: the normalised input averaged over each token's region."""
        h = self._normalised(x)
        if self.modality == "image":
            grid = math.isqrt(tokens)
            if grid * grid != tokens:
                raise RecipeError(f"objectives.{self.name}: the '{self.input}' encoder's {tokens} tokens are not a "
                                  "square grid of image positions", hint="use the cnn or vit image encoder")
            return F.adaptive_avg_pool2d(h, grid).flatten(2).transpose(1, 2)
        if self.modality == "audio":
            return F.adaptive_avg_pool1d(h, tokens).transpose(1, 2)
        b, k = h.shape[:2]
        return F.adaptive_avg_pool2d(h.flatten(0, 1), VIDEO_GRID).view(b, k, -1)

    def _hide(self, x: Tensor, hidden: Tensor) -> Tensor:
        """``x`` with the regions of ``hidden [B, T]`` tokens set to the input's mean."""
        return hide_regions(x, hidden, self.modality, self.mean)

    def _masked_error(self, rep: Any, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor] | None:
        """(squared errors ``[B, T, W]``, hidden real tokens ``[B, T]``), or None without a real token."""
        encoder = self._model().backbone.encoders[self.input]
        output = rep.encoded[self.input]
        real = output.mask
        if not real.any():
            return None
        hidden = (hide_draws(real.shape, real.device, self.training) < self.ratio) & real
        x, mask = batch[self.input], batch[f"{self.input}_mask"]
        tokens = encoder(self._hide(x, hidden), mask).tokens
        targets = self._targets(x, tokens.shape[1]).to(tokens.dtype)
        return (self.head(tokens) - targets).square(), hidden

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor | None:
        found = self._masked_error(rep, batch)
        if found is None or not found[1].any():
            return None
        error, hidden = found
        return error[hidden].mean()


def hide_regions(x: Tensor, hidden: Tensor, modality: str, mean: Tensor) -> Tensor:
    """``x`` (raw pixels, features or frames) with the regions of the ``hidden [B, T]`` tokens set to the
    input's ``mean``: an image's ``g x g`` grid cells, audio frames (after the encoder's downsampling),
    video frames."""
    fill = (mean * 255.0).round().to(x.dtype) if modality in ("image", "video") else mean.to(x.dtype)
    if modality == "image":
        grid = math.isqrt(hidden.shape[1])
        region = F.interpolate(hidden.view(-1, 1, grid, grid).float(), size=x.shape[-2:], mode="nearest").bool()
        return torch.where(region, fill, x)
    if modality == "audio":
        region = F.interpolate(hidden.unsqueeze(1).float(), size=x.shape[-1], mode="nearest").bool()
        return torch.where(region, fill, x)
    return torch.where(hidden.view(*hidden.shape, 1, 1, 1), fill, x)


def hide_draws(shape: torch.Size, device: torch.device, training: bool) -> Tensor:
    """Uniform draws deciding what to hide: from the global RNG while training (checkpoints save it, so
    a resumed run hides the same), from a fixed generator in evaluation (a validation loss that does
    not move with the RNG's state, and leaves it alone)."""
    if training:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
