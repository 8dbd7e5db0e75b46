"""Audio encoder: a 1-D CNN over time on log-mel/MFCC frames, with a downsampled frame mask."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmcli.config import Settings
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


class AudioCnnConfig(Settings):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = Field(default_factory=lambda: [64, 128], min_length=1,
                                description="output channels of each conv block (each halves the frame rate)")
    kernel_size: int = Field(5, ge=1, description="temporal kernel width (odd keeps frames centred)")


@ENCODERS["audio"].register("cnn", AudioCnnConfig)
class AudioCnnEncoder(nn.Module):
    """Conv1d blocks over time with the features as input channels.

    Spec keys: ``n_features``, ``frames``, ``mean``, ``std`` (floats, or one per feature).

    Args (forward):
        x: ``[B, F, T]`` float features. mask: ``[B, T]`` bool, True for real frames.
    Returns:
        ``EncoderOutput(tokens [B, T', D], mask [B, T'], pooled [B, D])``, ``T' = ceil(T / 2**len(channels))``;
        a token is real if any frame it pools is real.
    """

    def __init__(self, config: AudioCnnConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        # scalar or per-feature statistics both broadcast as [F or 1, 1]
        self.register_buffer("mean", torch.tensor(spec["mean"], dtype=torch.float32).reshape(-1, 1))
        self.register_buffer("std", torch.tensor(spec["std"], dtype=torch.float32).reshape(-1, 1))
        in_channels = int(spec["n_features"])
        self.blocks = nn.ModuleList()
        for out in config.channels:
            self.blocks.append(nn.Sequential(
                nn.Conv1d(in_channels, out, config.kernel_size, padding=config.kernel_size // 2, bias=False),
                nn.BatchNorm1d(out), nn.GELU(),
            ))
            in_channels = out
        self.proj = nn.Conv1d(in_channels, hidden_size, 1)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        mask = mask.bool()
        # padded frames are zeroed so convolutions read them exactly like the conv's own zero padding:
        # outputs then do not depend on what (or how much) padding follows the real frames
        h = ((x.float() - self.mean) / self.std).masked_fill(~mask.unsqueeze(1), 0.0)
        for block in self.blocks:
            h = block(h)
            # masked max-pool: padded frames never win the max; fully padded windows become padding
            h = F.max_pool1d(h.masked_fill(~mask.unsqueeze(1), float("-inf")), 2, ceil_mode=True)
            mask = F.max_pool1d(mask.unsqueeze(1).float(), 2, ceil_mode=True).squeeze(1) > 0
            h = h.masked_fill(~mask.unsqueeze(1), 0.0)
        tokens = self.proj(h).transpose(1, 2)  # [B, D, T'] -> [B, T', D]
        return finish(tokens, mask, masked_mean(tokens, mask), self.missing)
