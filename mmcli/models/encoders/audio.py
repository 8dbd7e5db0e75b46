"""Audio encoder: a 1-D CNN over time on log-mel/MFCC frames, with a downsampled frame mask."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.encoders.conv_blocks import (AttentionPool, ConvBlockSettings, ReadoutSettings, conv_layers, fc_stack,
                                               out_length, pool_positions)
from mmcli.models.outputs import EncoderOutput, finish
from mmcli.registries import ENCODERS


class AudioCnnConfig(ReadoutSettings):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = Field(default_factory=lambda: [64, 128], min_length=1,
                                description="output channels of each conv block (each halves the frame rate)")
    kernel_size: int = Field(5, ge=1, description="temporal kernel width (odd keeps frames centred)")
    blocks: list[ConvBlockSettings] | None = Field(
        None, min_length=1, description="every block's settings (channels, kernel, stride, padding, bias, norm, "
                                        "activation, pool: max | avg | none, pool_size, dropout); replaces channels "
                                        "and kernel_size. Pooling skips padded frames")

    def block_settings(self) -> list[ConvBlockSettings]:
        if self.blocks:
            return list(self.blocks)
        return [ConvBlockSettings(channels=c, kernel=self.kernel_size) for c in self.channels]


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
        self.settings = config.block_settings()
        self.pool = config.pool
        # with an FC read-out the blocks' own channels are pooled (or flattened) and the FC stack makes
        # the vector; without one, a 1x1 conv projects every frame to hidden_size
        with_fc = config.pool == "flatten" or bool(config.fc_layers)
        self.blocks = nn.ModuleList()
        frames = int(spec.get("frames", 1))
        try:
            for block in self.settings:
                self.blocks.append(nn.Sequential(*conv_layers(block, in_channels, dims=1, with_pool=False)))
                in_channels = block.channels
                frames = out_length(frames, block)
        except ValueError as error:
            raise RecipeError(f"audio encoder: {error}") from None
        self.proj = nn.Conv1d(in_channels, hidden_size, 1) if not with_fc else None
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)
        # created after the original modules: the default encoder keeps its seeded initial weights
        self.attention = AttentionPool(hidden_size if self.proj is not None else in_channels) \
            if config.pool == "attention" else None
        read = in_channels * (frames if config.pool == "flatten" else 1)
        self.fc = fc_stack(read, config, hidden_size) if with_fc else None

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        mask = mask.bool()
        # padded frames are zeroed so convolutions read them exactly like the conv's own zero padding:
        # outputs then do not depend on what (or how much) padding follows the real frames
        h = ((x.float() - self.mean) / self.std).masked_fill(~mask.unsqueeze(1), 0.0)
        for block, settings in zip(self.blocks, self.settings):
            h = block(h)
            if settings.stride > 1:  # an output frame is real if its window holds a real frame
                padding = settings.kernel // 2 if settings.padding == "same" else min(settings.padding, settings.kernel // 2)
                mask = F.max_pool1d(mask.unsqueeze(1).float(), settings.kernel, settings.stride, padding).squeeze(1)[
                    :, :h.shape[-1]] > 0
            h, mask = _pool(h, mask, settings)
        tokens = (self.proj(h) if self.proj is not None else h).transpose(1, 2)  # [B, T', D or channels]
        if self.pool == "flatten":  # every frame position in order, channel-major as nn.Flatten on [B, C, T']
            vector = h.flatten(1)
        else:
            vector = pool_positions(self.pool, tokens, mask, self.attention)
        if self.fc is None:
            return finish(tokens, mask, vector, self.missing)
        pooled = self.fc(vector)  # one token: the FC read-out's vector
        present = mask.any(dim=1, keepdim=True)
        return finish(pooled.unsqueeze(1), present, pooled, self.missing)


def _pool(h: Tensor, mask: Tensor, settings: ConvBlockSettings) -> tuple[Tensor, Tensor]:
    """Pooling over time that padded frames never take part in; a window of padding only becomes padding."""
    if settings.pool == "none":
        return h.masked_fill(~mask.unsqueeze(1), 0.0), mask
    size, frames = settings.pool_size, mask.unsqueeze(1).float()
    if settings.pool == "max":
        h = F.max_pool1d(h.masked_fill(~mask.unsqueeze(1), float("-inf")), size, ceil_mode=True)
    else:  # the mean of the real frames in the window
        total = F.avg_pool1d(h.masked_fill(~mask.unsqueeze(1), 0.0), size, ceil_mode=True)
        share = F.avg_pool1d(frames, size, ceil_mode=True)
        h = total / share.clamp(min=1e-6)
    mask = F.max_pool1d(frames, size, ceil_mode=True).squeeze(1) > 0
    return h.masked_fill(~mask.unsqueeze(1), 0.0), mask
