"""Video encoder: an image network on each real frame, then temporal pooling over frames."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, ValidationError, field_validator
from torch import Tensor, nn

from mmcli.models.encoders._width import EncoderSettings
from mmcli.errors import RecipeError
from mmcli.models.encoders.image import ConvNet, PixelNormalize, run_on_rows
from mmcli.models.outputs import EncoderOutput, finish, masked_mean, masked_softmax
from mmcli.registries import ENCODERS


class VideoFramesConfig(EncoderSettings):
    type: Literal["frames"] = "frames"
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1,
                                description="per-frame CNN block channels")
    temporal: Literal["mean", "attention", "conv", "transformer"] = Field(
        "conv", description="mean or attention pooling over frames; conv first mixes neighbouring frames (sees motion); "
                            "transformer: one self-attention layer over the frames, then the mean")
    spatial: Literal["mean", "flatten"] = Field(
        "flatten", description="per-frame map to a vector: mean over space, or flatten (keeps where things are); "
                               "built-in CNN only")
    frame_encoder: Any = Field(
        None, description="null: the built-in CNN (channels, spatial); or any image encoder's settings, e.g. "
                          "{type: vit}: its pooled vector per frame is used (channels and spatial are then ignored)")
    heads: int = Field(4, ge=1, description="attention heads of temporal: transformer; must divide model.hidden_size")

    @field_validator("frame_encoder", mode="before")
    @classmethod
    def _frame_encoder(cls, value: Any) -> Any:
        config = None if value is None else image_encoder_config(value)
        if config is not None and config.width is not None:
            raise ValueError("width: a frame network runs at the video encoder's width (set encoder.width instead)")
        return config


def image_encoder_config(value: Any) -> Any:
    """Validate ``value`` as the settings of a registered image encoder (looked up when used, so every
    image encoder module, including ones added later, is known)."""
    registry = ENCODERS["image"]
    configs = dict(zip(registry.names(), registry.configs()))
    if isinstance(value, tuple(configs.values())):
        return value
    if not isinstance(value, dict):
        raise ValueError("must be an image encoder's settings, e.g. {type: cnn}")
    kind = value.get("type")
    if kind not in configs:
        raise ValueError(f"type: unknown image encoder '{kind}' (known: {', '.join(configs)})")
    try:
        return configs[kind](**value)
    except ValidationError as err:
        raise ValueError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'frame_encoder'}: {e['msg']}"
                                   for e in err.errors())) from None


@ENCODERS["video"].register("frames", VideoFramesConfig)
class VideoFramesEncoder(nn.Module):
    """Per-frame network + learned frame positions + temporal pooling.

    The per-frame network is the built-in CNN (``frame_encoder: null``, the default) or any
    registered image encoder (``frame_encoder: {type: vit, ...}``), whose pooled ``[D]`` vector
    stands for the frame.

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
        if config.temporal == "transformer" and hidden_size % config.heads:
            raise RecipeError(f"video encoder: heads ({config.heads}) must divide hidden_size ({hidden_size})")
        self.frame_encoder: nn.Module | None = None
        if config.frame_encoder is None:
            self.normalize = PixelNormalize(spec["mean"], spec["std"])
            self.cnn = ConvNet(int(spec["channels"]), config.channels, hidden_size)
            cells = self.cnn.out_size(int(spec["size"])) ** 2
            self.spatial = nn.Linear(cells * hidden_size, hidden_size) if config.spatial == "flatten" else None
        else:
            image_spec = {key: spec[key] for key in ("channels", "size", "mean", "std")}  # it normalises itself
            self.frame_encoder = ENCODERS["image"].build(config.frame_encoder, spec=image_spec, hidden_size=hidden_size)
            missing = getattr(self.frame_encoder, "missing", None)
            if isinstance(missing, nn.Parameter):
                # padded frames are masked out below, so the image encoder's missing vector is never used
                missing.requires_grad_(False)
        self.temporal_conv = (nn.Sequential(nn.Conv1d(hidden_size, hidden_size, 3, padding=1), nn.GELU())
                              if config.temporal == "conv" else None)
        self.positions = nn.Parameter(torch.randn(int(spec["num_frames"]), hidden_size) * 0.02)
        self.score = nn.Linear(hidden_size, 1) if config.temporal == "attention" else None
        self.temporal_transformer: nn.Module | None = None
        if config.temporal == "transformer":
            layer = nn.TransformerEncoderLayer(hidden_size, config.heads, dim_feedforward=4 * hidden_size, dropout=0.1,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.temporal_transformer = nn.TransformerEncoder(layer, 1, norm=nn.LayerNorm(hidden_size),
                                                              enable_nested_tensor=False)
        self.missing = nn.Parameter(torch.randn(hidden_size) * 0.02)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        b, k = x.shape[:2]
        mask = mask.bool()
        if self.frame_encoder is None:
            # only real frames go through the CNN: padded frames neither cost compute nor shift BatchNorm
            frames = run_on_rows(self.cnn, self.normalize(x.flatten(0, 1)), mask.flatten())
            per_frame = self.spatial(frames.flatten(1)) if self.spatial is not None else frames.mean(dim=1)
        else:
            # each frame is one image row; padded frames are "missing images", which image encoders skip
            per_frame = self.frame_encoder(x.flatten(0, 1), mask.reshape(-1, 1)).pooled  # [B*K, D]
        tokens = per_frame.view(b, k, -1) * mask.unsqueeze(-1) + self.positions[:k].to(per_frame.dtype)
        if self.temporal_conv is not None:
            # padded frames are zeroed above, so the convolution only mixes real neighbours in
            tokens = tokens + self.temporal_conv(tokens.transpose(1, 2)).transpose(1, 2)
        if self.temporal_transformer is not None:
            # rows with no real frame would attend to nothing (NaN); their output is replaced anyway
            padding = ~mask & mask.any(dim=1, keepdim=True)
            tokens = self.temporal_transformer(tokens, src_key_padding_mask=padding)
        if self.score is None:
            pooled = masked_mean(tokens, mask)
        else:
            weights = masked_softmax(self.score(tokens).squeeze(-1), mask)  # [B, K]
            pooled = torch.einsum("bk,bkd->bd", weights, tokens)
        return finish(tokens, mask, pooled, self.missing)
