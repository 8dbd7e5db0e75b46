"""The noise model shared by `evaluate --robustness` and `training.modality_noise`.

Noise at level ``l`` in [0, 1]: Gaussian noise of std ``l`` on pixels in [0, 1] (image,
video), of std ``l`` times the fitted feature std on audio features, and token dropout with
probability ``l`` on text. Levels are per row, so one call can corrupt a training batch with a
different strength for every row (level 0 leaves a row exactly as it was).
"""

from __future__ import annotations

import numpy as np
import torch


def corrupt_rows(tensors: dict[str, torch.Tensor], name: str, modality: str, spec: dict, levels: torch.Tensor,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A copy of ``tensors`` with input ``name`` corrupted at ``levels[row]`` (no other column changes)."""
    out = dict(tensors)
    x, mask = tensors[name], tensors[f"{name}_mask"]
    scale = levels.to(x.device, torch.float32).view(-1, *([1] * (x.dim() - 1)))
    if modality in ("image", "video"):
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        pixels = x.float() / 255 + noise * scale
        out[name] = (pixels.clamp(0, 1) * 255).round().to(x.dtype)
    elif modality == "audio":
        std = float(np.mean(spec.get("std", 1.0)))
        noise = torch.randn(x.shape, generator=generator).to(x.device)
        out[name] = (x.float() + noise * scale * std).to(x.dtype)
    elif modality == "text":
        draws = torch.rand(mask.shape, generator=generator).to(mask.device)
        dropped = (draws < scale.view(-1, *([1] * (mask.dim() - 1)))) & mask
        out[name] = x.masked_fill(dropped, int(spec.get("pad_id", 0)))
        out[f"{name}_mask"] = mask & ~dropped
    else:
        raise ValueError(f"no noise model for modality '{modality}'")
    return out
