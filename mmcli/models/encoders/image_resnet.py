"""Image encoder: a torchvision ResNet (18/34/50) whose last feature map becomes the token sequence."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.errors import RecipeError
from mmcli.models.encoders.image import PixelNormalize, run_on_rows
from mmcli.models.outputs import EncoderOutput, finish, masked_mean
from mmcli.registries import ENCODERS


class ImageResNetConfig(EncoderSettings):
    type: Literal["resnet"] = "resnet"
    arch: Literal["resnet18", "resnet34", "resnet50"] = Field("resnet18", description="torchvision ResNet depth")
    weights: str | None = Field(
        None, description="null: random init; or a local .pth/.pt/.safetensors file with a torchvision ResNet "
                          "state_dict (e.g. ImageNet weights saved beforehand). Nothing is ever downloaded.")


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

    def __init__(self, arch: str, in_channels: int, hidden_size: int, weights: str | None) -> None:
        super().__init__()
        import torchvision

        resnet = getattr(torchvision.models, arch)(weights=None)  # never the torchvision download path
        state = load_state_dict(weights) if weights else None
        stem_channels = int(state["conv1.weight"].shape[1]) if state and "conv1.weight" in state else 3
        if stem_channels != 3:
            resnet.conv1 = _stem(resnet.conv1, stem_channels)
        if state is not None:
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the classifier is dropped
            result = resnet.load_state_dict(state, strict=False)
            missing = [k for k in result.missing_keys if not k.startswith("fc.")]
            if missing or result.unexpected_keys:
                raise RecipeError(
                    f"image encoder weights: {weights} is not a torchvision {arch} state_dict "
                    f"(missing: {', '.join(missing[:3]) or '-'}; unexpected: {', '.join(result.unexpected_keys[:3]) or '-'})")
        if in_channels != resnet.conv1.in_channels:
            # grey images on an RGB stem: summing the filters over RGB keeps pretrained responses to grey input
            resnet.conv1 = _stem(resnet.conv1, in_channels)
        out_channels = resnet.fc.in_features
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
    """torchvision ResNet over one image per row; the last feature map (projected to D) is the token sequence.

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
        self.resnet = ResNetTrunk(config.arch, int(spec["channels"]), hidden_size, config.weights)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        present = mask.bool().reshape(x.shape[0], -1).any(dim=1)
        # only present images run: missing rows neither cost compute nor shift BatchNorm statistics
        tokens = run_on_rows(self.resnet, self.normalize(x), present)  # type: ignore[arg-type]
        token_mask = present.unsqueeze(1).expand(-1, tokens.shape[1])
        return finish(tokens, token_mask, masked_mean(tokens, token_mask), self.missing)
