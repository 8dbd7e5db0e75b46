"""Training-time augmentation of the cached inputs (``inputs.NAME.augment``): the settings and the ops.

Images (and video clips) get torchvision's random resized crop, horizontal flip, rotation and colour
jitter; audio features get SpecAugment's time and frequency masks. Every op is vectorised over the
batch with its own random parameters per row (torchvision's v2 transforms draw one set of parameters
per call, so a batch tensor would get the same crop everywhere): crop and rotation are one affine
grid (``F.affine_grid`` / ``grid_sample``), the flip a masked ``torch.where``, the jitter per-row
factors with torchvision's blend formulas. A video clip gets one set of parameters for all its frames.

The parameters are drawn on the CPU from the ``generator`` given (the training callback derives it
from the run's seed and the batch's position), so the same batch is augmented the same way on any
device and after a resume. These settings live beside the ops here, under ``models``, because the
recipe schema may import ``models`` but not ``data`` or ``training``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from mmcli.settings import Settings

CROP_TRIES = 10  # torchvision's RandomResizedCrop tries 10 boxes before falling back to the whole image


class CropSettings(Settings):
    scale: tuple[float, float] = Field((0.08, 1.0), description="share of the image's area the crop covers, "
                                                                "drawn uniformly in [low, high] (torchvision's)")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="width/height of the crop, log-uniform in "
                                                                   "[low, high] (torchvision's)")

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("needs 0 < low <= high")
        return value


class JitterSettings(Settings):
    """Factors drawn per row as torchvision's ColorJitter does: brightness, contrast and saturation
    uniformly in [max(0, 1 - v), 1 + v], the hue shift in [-hue, hue] (of a full turn)."""

    brightness: float = Field(0.0, ge=0)
    contrast: float = Field(0.0, ge=0)
    saturation: float = Field(0.0, ge=0)
    hue: float = Field(0.0, ge=0, le=0.5)


class ImageAugment(Settings):
    """``inputs.NAME.augment`` for image and video inputs; applied in the order crop, rotation, flip, jitter."""

    random_resized_crop: CropSettings | None = Field(None, description="crop a random box and resize it back "
                                                                       "(true: torchvision's defaults)")
    horizontal_flip: float = Field(0.0, ge=0, le=1, description="probability of mirroring a row")
    rotation: float = Field(0.0, ge=0, le=180, description="rotate by an angle drawn in [-rotation, rotation] "
                                                           "degrees; corners outside the image are black")
    color_jitter: JitterSettings | None = None

    @field_validator("random_resized_crop", mode="before")
    @classmethod
    def _true_means_defaults(cls, value: Any) -> Any:
        return {} if value is True else value


class SpecAugment(Settings):
    """``inputs.NAME.augment`` for audio inputs: SpecAugment's masks (Park et al., 2019) on the log-mel or
    MFCC features, set to the fitted feature mean (zero once the encoder normalises)."""

    time_mask: int = Field(0, ge=0, description="widest time mask, in frames (each width uniform in 0..time_mask)")
    freq_mask: int = Field(0, ge=0, description="widest frequency mask, in bands (uniform in 0..freq_mask)")
    masks: int = Field(2, ge=1, description="time masks and frequency masks per row (each)")


AUGMENT_SETTINGS: dict[str, type[Settings]] = {"image": ImageAugment, "video": ImageAugment, "audio": SpecAugment}


@dataclass
class ImageParams:
    """Per-row parameters (CPU tensors, ``N`` rows): the affine map from output to input coordinates
    (``theta [N, 2, 3]``, None when no crop or rotation), flips ``[N]`` and jitter factors ``[N]``."""

    theta: Tensor | None
    flip: Tensor | None
    brightness: Tensor | None
    contrast: Tensor | None
    saturation: Tensor | None
    hue: Tensor | None

    def repeat(self, times: int) -> ImageParams:
        """Each row's parameters ``times`` times in a row (one set for all frames of a clip)."""
        return ImageParams(*[None if value is None else value.repeat_interleave(times, dim=0)
                             for value in vars(self).values()])


def draw_image_params(rows: int, settings: ImageAugment, generator: torch.Generator) -> ImageParams:
    """Random parameters for ``rows`` images, drawn from ``generator`` in a fixed order."""

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(rows, *shape, generator=generator)

    theta = None
    crop, degrees = settings.random_resized_crop, settings.rotation
    if crop is not None or degrees > 0:
        width = height = torch.ones(rows)
        left = top = torch.zeros(rows)
        if crop is not None:
            area = uniform(*crop.scale, CROP_TRIES)
            ratio = torch.exp(uniform(math.log(crop.ratio[0]), math.log(crop.ratio[1]), CROP_TRIES))
            w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)  # shares of the image's side
            fits = (w <= 1) & (h <= 1)
            first = fits.int().argmax(dim=1, keepdim=True)  # the first box that fits, as torchvision takes it
            found = fits.any(dim=1)
            width = torch.where(found, w.gather(1, first).squeeze(1), 1.0)
            height = torch.where(found, h.gather(1, first).squeeze(1), 1.0)
            left, top = uniform(0, 1) * (1 - width), uniform(0, 1) * (1 - height)
        angle = torch.deg2rad(uniform(-degrees, degrees)) if degrees > 0 else torch.zeros(rows)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # grid coordinates in [-1, 1]: input = crop_scale * rotate(output) + crop_centre
        centre_x, centre_y = 2 * left + width - 1, 2 * top + height - 1
        theta = torch.stack([torch.stack([width * cos, -width * sin, centre_x], dim=1),
                             torch.stack([height * sin, height * cos, centre_y], dim=1)], dim=1)
    flip = torch.rand(rows, generator=generator) < settings.horizontal_flip if settings.horizontal_flip > 0 else None
    factors: dict[str, Tensor | None] = {}
    jitter = settings.color_jitter or JitterSettings()
    for key in ("brightness", "contrast", "saturation"):
        amount = getattr(jitter, key)
        factors[key] = uniform(max(0.0, 1 - amount), 1 + amount) if amount > 0 else None
    factors["hue"] = uniform(-jitter.hue, jitter.hue) if jitter.hue > 0 else None
    return ImageParams(theta=theta, flip=flip, **factors)


def apply_image_params(x: Tensor, params: ImageParams) -> Tensor:
    """``x [N, C, S, S]`` uint8 augmented with ``params`` (one row each) -> uint8 ``[N, C, S, S]``."""
    device = x.device
    pixels = x.float() / 255
    if params.theta is not None:
        grid = F.affine_grid(params.theta.to(device), list(pixels.shape), align_corners=False)
        pixels = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if params.flip is not None:
        pixels = torch.where(params.flip.to(device).view(-1, 1, 1, 1), pixels.flip(-1), pixels)
    pixels = _jitter(pixels, params)
    return (pixels * 255).round().clamp(0, 255).to(x.dtype)


def augment_images(x: Tensor, settings: ImageAugment, generator: torch.Generator) -> Tensor:
    """Images ``[B, C, S, S]`` or clips ``[B, K, C, S, S]`` (uint8), each row (clip) with its own random
    parameters, every frame of a clip with the same ones. Shape and dtype are kept."""
    if x.dim() == 5:
        rows, frames = x.shape[:2]
        params = draw_image_params(rows, settings, generator).repeat(frames)
        return apply_image_params(x.flatten(0, 1), params).view(x.shape)
    return apply_image_params(x, draw_image_params(x.shape[0], settings, generator))


def _jitter(pixels: Tensor, params: ImageParams) -> Tensor:
    """Brightness, contrast, saturation, hue with per-row factors (torchvision's formulas, fixed order)."""

    def per_row(values: Tensor) -> Tensor:
        return values.to(pixels.device).view(-1, 1, 1, 1)

    def blend(image: Tensor, other: Tensor, factor: Tensor) -> Tensor:
        return (factor * image + (1 - factor) * other).clamp(0, 1)

    colour = pixels.shape[1] == 3  # saturation and hue leave grey images as they are (as torchvision does)
    if params.brightness is not None:
        pixels = blend(pixels, torch.zeros_like(pixels), per_row(params.brightness))
    if params.contrast is not None:
        grey = _grey(pixels) if colour else pixels
        pixels = blend(pixels, grey.mean(dim=(1, 2, 3), keepdim=True), per_row(params.contrast))
    if params.saturation is not None and colour:
        pixels = blend(pixels, _grey(pixels), per_row(params.saturation))
    if params.hue is not None and colour:
        pixels = _shift_hue(pixels, per_row(params.hue))
    return pixels


def _grey(pixels: Tensor) -> Tensor:
    from torchvision.transforms.v2.functional import rgb_to_grayscale

    return rgb_to_grayscale(pixels, num_output_channels=1)


def _shift_hue(rgb: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue of ``rgb [N, 3, H, W]`` (in [0, 1]) by ``shift [N, 1, 1, 1]`` turns, keeping
    saturation and value: RGB -> HSV, then back with the closed form ``v - v s clamp(min(k, 4 - k), 0, 1)``."""
    red, green, blue = rgb.unbind(dim=1)
    value, _ = rgb.max(dim=1)
    spread = value - rgb.min(dim=1).values
    safe = torch.where(spread > 0, spread, torch.ones_like(spread))
    hue = torch.where(value == red, (green - blue) / safe,
                      torch.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4))
    hue = torch.where(spread > 0, hue / 6, torch.zeros_like(hue)) + shift.squeeze(1)
    saturation = spread / torch.where(value > 0, value, torch.ones_like(value))
    offsets = torch.tensor([5.0, 3.0, 1.0], device=rgb.device).view(1, 3, 1, 1)
    k = torch.remainder(offsets + 6 * hue.unsqueeze(1), 6)
    return value.unsqueeze(1) * (1 - saturation.unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1))


def spec_augment(x: Tensor, mask: Tensor, settings: SpecAugment, fill: Tensor, generator: torch.Generator) -> Tensor:
    """SpecAugment on features ``x [B, F, T]`` whose real frames are ``mask [B, T]``: ``masks`` time bands
    (within each row's real frames) and ``masks`` frequency bands per row are set to ``fill`` (the fitted
    mean: a scalar or one per band, ``[F, 1]``). Padded frames and missing rows are left alone."""
    rows, bands, frames = x.shape
    draws = torch.rand(rows, settings.masks, 4, generator=generator).to(x.device)
    lengths = mask.sum(dim=1, keepdim=True)  # [B, 1] real frames

    def band(size: Tensor | int, widest: int, width_draw: Tensor, start_draw: Tensor, extent: int) -> Tensor:
        width = torch.minimum(torch.floor(width_draw * (widest + 1)), torch.as_tensor(size, device=x.device))
        start = torch.floor(start_draw * (size - width + 1))  # [B, masks]
        position = torch.arange(extent, device=x.device).view(1, 1, -1)
        return ((position >= start.unsqueeze(-1)) & (position < (start + width).unsqueeze(-1))).any(dim=1)

    hidden = torch.zeros(rows, bands, frames, dtype=torch.bool, device=x.device)
    if settings.time_mask > 0:
        hidden |= band(lengths, settings.time_mask, draws[..., 0], draws[..., 1], frames).unsqueeze(1)
    if settings.freq_mask > 0:
        hidden |= band(bands, settings.freq_mask, draws[..., 2], draws[..., 3], bands).unsqueeze(2)
    hidden &= mask.bool().unsqueeze(1)
    return torch.where(hidden, fill.to(device=x.device, dtype=x.dtype), x)
