"""Image encoder: a torchvision ResNet (18/34/50), or a BasicBlock ResNet of any depth and width
(``layers``, ``channels``), whose last feature map becomes the token sequence."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.errors import RecipeError
from mmcli.models.encoders.image import PixelNormalize, run_on_rows
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


ARCH_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}  # BasicBlocks per stage (torchvision's)


class ImageResNetConfig(EncoderSettings):
    type: Literal["resnet"] = "resnet"
    arch: Literal["resnet18", "resnet34", "resnet50"] = Field("resnet18", description="torchvision ResNet depth")
    layers: list[int] | None = Field(
        None, min_length=4, max_length=4, description="BasicBlocks in each of the 4 stages, e.g. [1, 1, 1, 1] "
                                                      "(default: the arch's; resnet18 is [2, 2, 2, 2])")
    channels: int | list[int] | None = Field(
        None, description="channels of the 4 stages: one number for the first, doubled at each stage (16: 16, 32, "
                          "64, 128), or all four (default: 64, as torchvision's)")
    weights: str | None = Field(
        None, description="null: random init; or a local .pth/.pt/.safetensors file with a torchvision ResNet "
                          "state_dict (e.g. ImageNet weights saved beforehand). Nothing is ever downloaded.")

    @model_validator(mode="after")
    def _check_custom(self) -> "ImageResNetConfig":
        if (self.layers is not None or self.channels is not None) and self.arch == "resnet50":
            raise ValueError("layers and channels build BasicBlock stages (resnet18/34 style); resnet50 has "
                             "Bottleneck blocks")
        if any(blocks < 1 for blocks in self.layers or []):
            raise ValueError("layers: every stage needs at least one block")
        if isinstance(self.channels, list):
            widths = self.channels if len(self.channels) == 4 else [0]
        else:
            widths = [1 if self.channels is None else self.channels]
        if min(widths) < 1:
            raise ValueError("channels: one positive number (doubled at each stage), or four")
        return self

    def stages(self) -> tuple[list[int], list[int]] | None:
        """(blocks, channels) per stage of a custom BasicBlock ResNet; None for torchvision's own arch."""
        if self.layers is None and self.channels is None:
            return None
        width = self.channels if self.channels is not None else 64
        widths = list(width) if isinstance(width, list) else [width * 2**stage for stage in range(4)]
        return list(self.layers or ARCH_LAYERS[self.arch]), widths


class BasicResNet(nn.Module):
    """torchvision's ResNet layout (7x7 stem ``conv1``/``bn1``, max-pool, ``layer1..4``; the same
    state-dict keys, so a matching torchvision state dict loads) built from torchvision's ``BasicBlock``
    with ``layers[i]`` blocks and ``channels[i]`` channels in stage i. ``[2, 2, 2, 2]`` at
    ``[64, 128, 256, 512]`` is resnet18 without its classifier.

    ``[N, 3, S, S]`` -> ``[N, channels[-1], ceil(S/32), ceil(S/32)]``.
    """

    def __init__(self, layers: list[int], channels: list[int]) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.conv1 = nn.Conv2d(3, channels[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        previous = channels[0]
        for stage, (blocks, width) in enumerate(zip(layers, channels)):
            stride = 1 if stage == 0 else 2
            downsample = None
            if stride != 1 or previous != width:  # the shortcut must match the block's output shape
                downsample = nn.Sequential(nn.Conv2d(previous, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
            stage_blocks = [BasicBlock(previous, width, stride, downsample)]
            stage_blocks += [BasicBlock(width, width) for _ in range(blocks - 1)]
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stage_blocks))
            previous = width
        self.out_channels = previous
        for module in self.modules():  # torchvision's initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def load_state_dict(path: str) -> dict[str, Tensor]:
    """A tensor dict from ``.safetensors`` or a ``torch.save``d state dict (``weights_only``: no pickled code).

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, with or
    without a DataParallel ``module.`` prefix.
    """
    file = Path(path)
    if not file.is_file():
        raise RecipeError(f"image encoder weights: no such file: {path}", hint="weights takes a local state_dict file")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file), device="cpu")
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickled objects refused by weights_only, ...
        raise RecipeError(f"image encoder weights: cannot read {path}: {' '.join(str(err).split())[:200]}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise RecipeError(f"image encoder weights: {path} does not hold a state_dict (name -> tensor)")
    return {k.removeprefix("module."): v for k, v in state.items()}


class ResNetTrunk(nn.Module):
    """ResNet without its pooling/classifier + a 1x1 conv to ``hidden_size``: ``[N, C, S, S]`` -> ``[N, D, s, s]``.

    ``s = ceil(S / 32)``; ``net`` and ``out_size`` follow ``ConvNet`` so ``run_on_rows`` applies.
    """

    def __init__(self, arch: str, in_channels: int, hidden_size: int, weights: str | None,
                 stages: tuple[list[int], list[int]] | None = None) -> None:
        super().__init__()
        import torchvision

        if stages is None:
            resnet: Any = getattr(torchvision.models, arch)(weights=None)  # never the torchvision download path
            out_channels = resnet.fc.in_features
        else:
            resnet = BasicResNet(*stages)
            out_channels = resnet.out_channels
        state = load_state_dict(weights) if weights else None
        stem_channels = int(state["conv1.weight"].shape[1]) if state and "conv1.weight" in state else 3
        if stem_channels != 3:
            resnet.conv1 = _stem(resnet.conv1, stem_channels)
        if state is not None:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the classifier is dropped
            shape = arch if stages is None else f"layers {stages[0]} channels {stages[1]}"
            try:
                result = resnet.load_state_dict(state, strict=False)
            except RuntimeError as err:  # same names, other shapes (another width)
                raise RecipeError(f"image encoder weights: {weights} is not a torchvision {shape} state_dict "
                                  f"({' '.join(str(err).split())[:200]})") from err
            missing = [k for k in result.missing_keys if not k.startswith("fc.")]
            if missing or result.unexpected_keys:
                raise RecipeError(
                    f"image encoder weights: {weights} is not a torchvision {shape} state_dict "
                    f"(missing: {', '.join(missing[:3]) or '-'}; unexpected: {', '.join(result.unexpected_keys[:3]) or '-'})")
        if in_channels != resnet.conv1.in_channels:
            # grey images on an RGB stem: summing the filters over RGB keeps pretrained responses to grey input
            resnet.conv1 = _stem(resnet.conv1, in_channels)
        self.net = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                                 resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
                                 nn.Conv2d(out_channels, hidden_size, 1))
        self.out_channels = hidden_size

    @staticmethod
    def out_size(size: int) -> int:
        # conv1 (stride 2), max-pool (stride 2), layer2..4 (stride 2 each): each maps s -> ceil(s / 2)
        return math.ceil(size / 32)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """``conv`` with ``in_channels`` inputs; to 1 channel its filters are summed over the old inputs."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False)
    with torch.no_grad():
        if in_channels == 1:
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        elif conv.in_channels == 1:
            new.weight.copy_(conv.weight.expand(-1, in_channels, -1, -1) / in_channels)
    return new


@ENCODERS["image"].register("resnet", ImageResNetConfig)
class ImageResNetEncoder(nn.Module):
    """torchvision ResNet (or a BasicBlock one of the recipe's depth and width) over one image per row; the last feature map (projected to D) is the token sequence.

    Spec keys: ``channels`` (1 or 3; a 1-channel stem replaces the RGB one), ``size``, ``mean``, ``std``.
    Pixels are normalised with the spec's (dataset) mean/std, like the other image encoders.

    Note: small images give small maps (``s = ceil(S / 32)``: 32x32 -> one token), and BatchNorm in
    training needs more than one value per channel: at ``s = 1`` a batch with a single present image fails.

    Args (forward):
        x: ``[B, C, S, S]`` uint8. mask: ``[B, 1]`` bool, False where the image is missing.
    Returns:
        ``EncoderOutput(tokens [B, s*s, D], mask [B, s*s], pooled [B, D])``.
    """

    def __init__(self, config: ImageResNetConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        self.normalize = PixelNormalize(spec["mean"], spec["std"])
        self.resnet = ResNetTrunk(config.arch, int(spec["channels"]), hidden_size, config.weights, config.stages())
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        present = mask.bool().reshape(x.shape[0], -1).any(dim=1)
        # only present images run: missing rows neither cost compute nor shift BatchNorm statistics
        tokens = run_on_rows(self.resnet, self.normalize(x), present)  # type: ignore[arg-type]
        token_mask = present.unsqueeze(1).expand(-1, tokens.shape[1])
        return finish(tokens, token_mask, masked_mean(tokens, token_mask), self.missing)
