"""Video encoder: the image CNN on each real frame, then temporal pooling over frames."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.config import Settings
from mmcli.models.encoders.image import ConvNet, PixelNormalize, run_on_rows
from mmcli.models.outputs import EncoderOutput, finish, masked_mean, masked_softmax
from mmcli.registries import ENCODERS


class VideoFramesConfig(Settings):
    type: Literal["frames"] = "frames"
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1,
                                description="per-frame CNN block channels")
    temporal: Literal["mean", "attention", "conv"] = Field(
        "conv", description="mean or attention pooling over frames; conv first mixes neighbouring frames (sees motion)")
    spatial: Literal["mean", "flatten"] = Field(
        "flatten", description="per-frame map to a vector: mean over space, or flatten (keeps where things are)")


@ENCODERS["video"].register("frames", VideoFramesConfig)
class VideoFramesEncoder(nn.Module):
    """Per-frame CNN + learned frame positions + temporal pooling.

    Mean pooling over space or time alone cannot see motion (a square moving left and one
    moving right have the same average), so the defaults flatten the spatial map and mix
    neighbouring frames with a temporal convolution before pooling.

    Spec keys: ``channels``, ``size``, ``num_frames``, ``mean``, ``std``.

    Args (forward):
        x: ``[B, K, C, S, S]`` uint8. mask: ``[B, K]`` bool, True for real frames.
    Returns:
        ``EncoderOutput(tokens [B, K, D], mask [B, K], pooled [B, D])``.
    """

    def __init__(self, config: VideoFramesConfig, spec: dict, hidden_size: int) -> None:
        super().__init__()
        self.normalize = PixelNormalize(spec["mean"], spec["std"])
        self.cnn = ConvNet(int(spec["channels"]), config.channels, hidden_size)
        cells = self.cnn.out_size(int(spec["size"])) ** 2
        self.spatial = nn.Linear(cells * hidden_size, hidden_size) if config.spatial == "flatten" else None
        self.temporal_conv = (nn.Sequential(nn.Conv1d(hidden_size, hidden_size, 3, padding=1), nn.GELU())
                              if config.temporal == "conv" else None)
        self.positions = nn.Parameter(torch.randn(int(spec["num_frames"]), hidden_size) * 0.02)
        self.score = nn.Linear(hidden_size, 1) if config.temporal == "attention" else None
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        b, k = x.shape[:2]
        mask = mask.bool()
        # only real frames go through the CNN: padded frames neither cost compute nor shift BatchNorm
        frames = run_on_rows(self.cnn, self.normalize(x.flatten(0, 1)), mask.flatten())
        per_frame = self.spatial(frames.flatten(1)) if self.spatial is not None else frames.mean(dim=1)
        tokens = per_frame.view(b, k, -1) * mask.unsqueeze(-1) + self.positions[:k].to(frames.dtype)
        if self.temporal_conv is not None:
            # padded frames are zeroed above, so the convolution only mixes real neighbours in
            tokens = tokens + self.temporal_conv(tokens.transpose(1, 2)).transpose(1, 2)
        if self.score is None:
            pooled = masked_mean(tokens, mask)
        else:
            weights = masked_softmax(self.score(tokens).squeeze(-1), mask)  # [B, K]
            pooled = torch.einsum("bk,bkd->bd", weights, tokens)
        return finish(tokens, mask, pooled, self.missing)
