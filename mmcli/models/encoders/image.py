"""Image encoder: a small CNN whose last feature map becomes the token sequence."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.config import Settings
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


class ImageCnnConfig(Settings):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1,
                                description="output channels of each conv block (each halves the resolution)")


class PixelNormalize(nn.Module):
    """uint8 pixels ``[..., C, S, S]`` -> float ``(x/255 - mean)/std`` with per-channel spec mean/std."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        # buffers: they follow .to(device) and are saved with the checkpoint
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


class ConvNet(nn.Module):
    """Conv blocks (3x3 conv, BatchNorm, GELU, 2x max-pool) and a 1x1 projection to ``hidden_size``.

    ``[N, C, S, S]`` float -> ``[N, D, s, s]`` with ``s = ceil(S / 2**len(channels))``.
    """

    def __init__(self, in_channels: int, channels: list[int], hidden_size: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [nn.Conv2d(in_channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.GELU(),
                       nn.MaxPool2d(2, ceil_mode=True)]  # ceil_mode: tiny images never pool to 0x0
            in_channels = out
        blocks.append(nn.Conv2d(in_channels, hidden_size, 1))
        self.net = nn.Sequential(*blocks)
        self.depth = len(channels)

    def out_size(self, size: int) -> int:
        return math.ceil(size / 2**self.depth)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def run_on_rows(net: ConvNet, x: Tensor, keep: Tensor) -> Tensor:
    """Apply ``net`` only to rows ``x[keep]`` (``x [N, C, S, S]``, ``keep [N]``) -> ``[N, s*s, D]``, zeros elsewhere.

    Skipping missing images/padded frames keeps their zeros out of BatchNorm statistics and saves compute.
    """
    size = net.out_size(x.shape[-1])
    hidden = net.net[-1].out_channels
    out = x.new_zeros((x.shape[0], size * size, hidden), dtype=torch.float32)
    if keep.any():
        feats = net(x[keep]).flatten(2).transpose(1, 2)  # [n, D, s, s] -> [n, s*s, D]
        out = out.to(feats.dtype).index_put((keep.nonzero(as_tuple=True)[0],), feats)
    return out


@ENCODERS["image"].register("cnn", ImageCnnConfig)
class ImageCnnEncoder(nn.Module):
    """CNN over one image per row.

    Spec keys: ``channels`` (1 or 3), ``size``, ``mean``, ``std``.

    Args (forward):
        x: ``[B, C, S, S]`` uint8. mask: ``[B, 1]`` bool, False where the image is missing.
    Returns:
        ``EncoderOutput(tokens [B, s*s, D], mask [B, s*s], pooled [B, D])``, ``s = ceil(S / 2**len(channels))``.
    """

    def __init__(self, config: ImageCnnConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        self.normalize = PixelNormalize(spec["mean"], spec["std"])
        self.cnn = ConvNet(int(spec["channels"]), config.channels, hidden_size)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        present = mask.bool().reshape(x.shape[0], -1).any(dim=1)
        tokens = run_on_rows(self.cnn, self.normalize(x), present)
        token_mask = present.unsqueeze(1).expand(-1, tokens.shape[1])
        return finish(tokens, token_mask, masked_mean(tokens, token_mask), self.missing)
