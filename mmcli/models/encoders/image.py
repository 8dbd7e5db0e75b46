"""Image encoder: a small CNN whose last feature map becomes the token sequence."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.encoders.conv_blocks import (AttentionPool, ConvBlockSettings, ReadoutSettings, conv_layers, fc_stack,
                                               out_length, pool_positions)
from mmcli.models.outputs import EncoderOutput, finish
from mmcli.registries import ENCODERS


class ImageCnnConfig(ReadoutSettings):
    type: Literal["cnn"] = "cnn"
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1,
                                description="output channels of each conv block (each halves the resolution)")
    blocks: list[ConvBlockSettings] | None = Field(
        None, min_length=1, description="every block's settings (channels, kernel, stride, padding, bias, norm, "
                                        "activation, pool, pool_size, dropout); replaces channels")

    def block_settings(self) -> list[ConvBlockSettings]:
        return list(self.blocks) if self.blocks else [ConvBlockSettings(channels=c) for c in self.channels]


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
    """Conv blocks (by default 3x3 conv, BatchNorm, GELU, 2x max-pool), then a 1x1 projection to
    ``hidden_size`` unless ``project`` is False.

    ``[N, C, S, S]`` float -> ``[N, out_channels, s, s]`` with ``s = out_size(S)``.
    """

    def __init__(self, in_channels: int, blocks: list[int] | list[ConvBlockSettings], hidden_size: int,
                 project: bool = True) -> None:
        super().__init__()
        self.blocks = [ConvBlockSettings(channels=b) if isinstance(b, int) else b for b in blocks]
        layers: list[nn.Module] = []
        for block in self.blocks:
            layers += conv_layers(block, in_channels, dims=2)
            in_channels = block.channels
        if project:
            layers.append(nn.Conv2d(in_channels, hidden_size, 1))
        self.net = nn.Sequential(*layers)
        self.out_channels = hidden_size if project else in_channels

    def out_size(self, size: int) -> int:
        for block in self.blocks:
            size = out_length(size, block)
        return size

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def run_on_rows(net: ConvNet, x: Tensor, keep: Tensor) -> Tensor:
    """Apply ``net`` only to rows ``x[keep]`` (``x [N, C, S, S]``, ``keep [N]``) -> ``[N, s*s, D]``, zeros elsewhere.

    Skipping missing images/padded frames keeps their zeros out of BatchNorm statistics and saves compute.
    The rows run channels-last: oneDNN's (and cuDNN's tensor-core) convolutions, BatchNorm and pooling
    are faster in that layout (on the quickstart's CPU, pooling 4x and the model's step about 40%).
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        # an exported graph has no data-dependent branch: every row goes through (eval mode, so the rows do
        # not mix) and the skipped ones are zeroed, so a batch in which no row has the input still runs
        feats = net(x).flatten(2).transpose(1, 2)
        return feats * keep.view(-1, 1, 1).to(feats.dtype)
    size = net.out_size(x.shape[-1])
    hidden = net.out_channels
    out = x.new_zeros((x.shape[0], size * size, hidden), dtype=torch.float32)
    if keep.any():
        rows = x[keep].contiguous(memory_format=torch.channels_last)
        feats = net(rows).flatten(2).transpose(1, 2)  # [n, D, s, s] -> [n, s*s, D]
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
        self.pool = config.pool
        # with an FC read-out the blocks' own map is pooled (or flattened) and the FC stack makes the
        # vector, as in a stacked CNN; without one, a 1x1 conv projects every position to hidden_size
        with_fc = config.pool == "flatten" or bool(config.fc_layers)
        self.normalize = PixelNormalize(spec["mean"], spec["std"])
        try:
            self.cnn = ConvNet(int(spec["channels"]), config.block_settings(), hidden_size, project=not with_fc)
            cells = self.cnn.out_size(int(spec["size"])) ** 2
        except ValueError as error:
            raise RecipeError(f"image encoder: {error}") from None
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)
        # created after the original modules: the default encoder keeps its seeded initial weights
        self.attention = AttentionPool(self.cnn.out_channels) if config.pool == "attention" else None
        read = self.cnn.out_channels * (cells if config.pool == "flatten" else 1)
        self.fc = fc_stack(read, config, hidden_size) if with_fc else None

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        present = mask.bool().reshape(x.shape[0], -1).any(dim=1)
        tokens = run_on_rows(self.cnn, self.normalize(x), present)  # [B, s*s, channels]
        token_mask = present.unsqueeze(1).expand(-1, tokens.shape[1])
        if self.pool == "flatten":  # channel-major, as nn.Flatten on [B, C, s, s]: such a model's weights fit
            vector = tokens.transpose(1, 2).flatten(1)
        else:
            vector = pool_positions(self.pool, tokens, token_mask, self.attention)
        if self.fc is None:
            return finish(tokens, token_mask, vector, self.missing)
        pooled = self.fc(vector)  # one token: the FC read-out's vector
        return finish(pooled.unsqueeze(1), present.unsqueeze(1), pooled, self.missing)
