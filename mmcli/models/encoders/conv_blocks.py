"""Convolution blocks and encoder read-outs, as recipes spell them (Ludwig's stacked_cnn and the
papers' CNNs): per block its conv, normalisation, activation, pooling and dropout; after the blocks,
how the map becomes one vector (mean, max, attention or flatten) and an optional stack of FC layers."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.models.outputs import masked_mean, masked_softmax
from mmcli.settings import Settings

Norm = Literal["batch", "layer", "group", "none"]
Activation = Literal["gelu", "relu", "silu", "tanh", "leaky_relu", "none"]
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


class ConvBlockSettings(Settings):
    """One block: conv -> norm -> activation -> pool -> dropout (a part set to none is left out)."""

    channels: int = Field(ge=1, description="output channels")
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    padding: int | Literal["same"] = Field("same", description="'same': kernel // 2 (the size kept at stride 1)")
    bias: bool = Field(False, description="a conv bias (redundant before batch norm)")
    norm: Norm = Field("batch", description="batch, layer (over channels and positions), group, none")
    groups: int = Field(8, ge=1, description="norm: group only; must divide channels")
    activation: Activation = "gelu"
    pool: Literal["max", "avg", "none"] = "max"
    pool_size: int = Field(2, ge=1, description="window and stride of the pooling")
    dropout: float = Field(0.0, ge=0, lt=1)


class ReadoutSettings(EncoderSettings):
    """How the last map becomes the encoder's vector (mixed into an encoder's settings)."""

    pool: Literal["mean", "max", "attention", "flatten"] = Field(
        "mean", description="mean, max or attention (a learned query) over positions of the 1x1-projected map, or "
                            "flatten: the whole map in order (keeps where things are), then fc_layers")
    fc_layers: list[int] = Field(default_factory=list, description="widths of FC layers (Linear, activation, dropout) "
                                 "after pooling; a last Linear to model.hidden_size is added when the last width differs")
    fc_activation: Activation = "relu"
    fc_dropout: float = Field(0.0, ge=0, lt=1)


def _norm(kind: str, channels: int, groups: int, dims: int) -> nn.Module | None:
    if kind == "batch":
        return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        if channels % groups:
            raise ValueError(f"norm: group needs groups ({groups}) to divide channels ({channels})")
        return nn.GroupNorm(groups, channels)
    return None


def activation(kind: str) -> nn.Module | None:
    return ACTIVATIONS[kind]() if kind != "none" else None


def conv_layers(block: ConvBlockSettings, in_channels: int, dims: int, with_pool: bool = True) -> list[nn.Module]:
    """The block's layers in order; ``with_pool=False`` leaves the pooling to the caller (masked pooling)."""
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    padding = block.kernel // 2 if block.padding == "same" else block.padding
    layers: list[nn.Module | None] = [conv(in_channels, block.channels, block.kernel, stride=block.stride,
                                           padding=padding, bias=block.bias),
                                      _norm(block.norm, block.channels, block.groups, dims), activation(block.activation)]
    if with_pool and block.pool != "none":
        pool = (nn.MaxPool2d if block.pool == "max" else nn.AvgPool2d) if dims == 2 else \
            (nn.MaxPool1d if block.pool == "max" else nn.AvgPool1d)
        layers.append(pool(block.pool_size, ceil_mode=True))  # ceil_mode: small inputs never pool to nothing
    if block.dropout:
        layers.append(nn.Dropout(block.dropout))
    return [layer for layer in layers if layer is not None]


def out_length(size: int, block: ConvBlockSettings) -> int:
    """Positions along one axis after ``block`` (conv, then pooling with ceil_mode)."""
    padding = block.kernel // 2 if block.padding == "same" else block.padding
    size = (size + 2 * padding - block.kernel) // block.stride + 1
    if block.pool != "none":
        size = math.ceil((size - block.pool_size) / block.pool_size) + 1
    if size < 1:
        raise ValueError(f"the input is too small for these blocks (a block leaves {size} positions)")
    return size


def fc_stack(in_features: int, settings: ReadoutSettings, out_features: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in settings.fc_layers:
        layers.append(nn.Linear(in_features, width))
        if (act := activation(settings.fc_activation)) is not None:
            layers.append(act)
        if settings.fc_dropout:
            layers.append(nn.Dropout(settings.fc_dropout))
        in_features = width
    if in_features != out_features:
        layers.append(nn.Linear(in_features, out_features))
    return nn.Sequential(*layers)


class AttentionPool(nn.Module):
    """A learned score per position, softmax over the real ones, the weighted sum."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Linear(width, 1)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        weights = masked_softmax(self.score(tokens).squeeze(-1), mask)
        return torch.einsum("bt,btd->bd", weights, tokens)


def pool_positions(kind: str, tokens: Tensor, mask: Tensor, attention: AttentionPool | None) -> Tensor:
    """``tokens [B, T, D]`` over the real positions -> ``[B, D]`` (mean, max or attention)."""
    if kind == "max":
        return tokens.masked_fill(~mask.unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(dim=1) \
            * mask.any(dim=1, keepdim=True).to(tokens.dtype)
    if kind == "attention":
        return attention(tokens, mask)
    return masked_mean(tokens, mask)
