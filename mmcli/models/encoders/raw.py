"""``raw``: no encoder. The input goes as it is (the batch's own tensors) to a whole pretrained model that
reads it itself, a vision-language model with its own vision tower (``model: {type: hf_vlm}``), so the
backbone adds no parameters and no computation for it. Registered for every modality; a recipe with
``model.type: hf_vlm`` gives it to the inputs the model reads, and the recipe check refuses it anywhere else."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput
from mmcli.registries import ENCODERS, MODALITIES
from mmcli.settings import Settings


class RawConfig(Settings):
    type: Literal["raw"] = "raw"


class RawInput(nn.Module):
    """``forward(x, mask) -> EncoderOutput`` of zeros (one position per row, real where the row has the
    input): what the backbone's contract asks of an encoder, at no cost. ``missing`` is a zero buffer, not a
    parameter, so the encoder saves nothing."""

    def __init__(self, config: RawConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        self.register_buffer("missing", torch.zeros(hidden_size), persistent=False)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        present = mask.bool().reshape(len(mask), -1).any(dim=1, keepdim=True)
        zeros = self.missing.expand(len(mask), -1)
        return EncoderOutput(tokens=zeros.unsqueeze(1), mask=present, pooled=zeros)


for _modality in MODALITIES:
    ENCODERS[_modality].register("raw", RawConfig)(RawInput)
