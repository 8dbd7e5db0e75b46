"""Video input: a path -> uint8 ``[K, C, S, S]`` (K frames sampled evenly) plus a ``[K]`` mask."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mmcli.data.processors.base import FixedShapeColumns, MediaError, media_path, pil_to_array
from mmcli.data.processors.pixels import PixelStatistics
from mmcli.registries import PROCESSORS
from mmcli.settings import Settings


class VideoConfig(Settings):
    num_frames: int = Field(8, ge=1, description="frames sampled evenly over the clip (fewer -> padded, masked)")
    size: int = Field(32, ge=1, description="frames are resized to size x size")
    channels: Literal[1, 3] = 3


@PROCESSORS.register("video", VideoConfig)
class VideoProcessor(PixelStatistics, FixedShapeColumns):
    """Columns: ``name`` uint8 ``[K, C, S, S]``, ``name_mask`` bool ``[K]``. The encoder normalises."""

    modality = "video"
    config_class = VideoConfig
    array_dtype = "uint8"

    config: VideoConfig

    def decode(self, value: Any, base_dir: Path) -> dict[str, np.ndarray]:
        cfg = self.config
        path = media_path(value, base_dir, "video")
        frames = read_video(path, cfg, str(value).strip())
        out = np.zeros(self.array_shape(), dtype=np.uint8)
        out[: len(frames)] = np.stack(frames)
        mask = np.zeros(cfg.num_frames, dtype=bool)
        mask[: len(frames)] = True
        return {self.name: out, self.mask_name: mask}

    def array_shape(self) -> tuple[int, ...]:
        cfg = self.config
        return cfg.num_frames, cfg.channels, cfg.size, cfg.size

    def mask_length(self) -> int:
        return self.config.num_frames

    def shape_spec(self) -> dict[str, Any]:
        return {**super().shape_spec(), "num_frames": self.config.num_frames}


def sample_indices(total: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``total`` frames (segment centres); all if fewer."""
    if total <= wanted:
        return list(range(total))
    return [int((i + 0.5) * total / wanted) for i in range(wanted)]


TRUNCATED = 0.75  # fewer decodable frames than this share of the declared count: a broken file


def read_video(path: Path, config: VideoConfig, shown: str) -> list[np.ndarray]:
    """Decode the sampled frames as uint8 ``[C, S, S]`` arrays.

    When the container states a frame count, only the sampled frames are converted and
    decoding stops after the last one; the count is only a hint, so if the stream ends early
    we decode again keeping every frame and sample from what really exists.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"video has no video stream: {shown}")
            declared = container.streams.video[0].frames or 0
        if declared > 0:
            wanted = sample_indices(declared, config.num_frames)
            seen, kept = _decode(path, config, set(wanted), wanted[-1])
            if seen > wanted[-1]:
                return [kept[i] for i in wanted]
        seen, kept = _decode(path, config, None, None)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise MediaError(f"cannot decode video {shown}: {' '.join(str(err).split())[:200]}") from err
    if seen == 0:
        raise MediaError(f"video has no frames: {shown}")
    if declared > 0 and seen < TRUNCATED * declared:  # a count is a hint, give or take a frame; not 3 of 24
        raise MediaError(f"truncated video {shown}: its container declares {declared} frames, {seen} decode")
    return [kept[i] for i in sample_indices(seen, config.num_frames)]


def _decode(path: Path, config: VideoConfig, keep: set[int] | None, last: int | None) -> tuple[int, dict[int, np.ndarray]]:
    """Decode frames in order; keep (resized) those in ``keep`` (all if None); stop after ``last``."""
    import av

    kept: dict[int, np.ndarray] = {}
    seen = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threading inside FFmpeg
        for frame in container.decode(stream):
            if keep is None or seen in keep:
                kept[seen] = pil_to_array(frame.to_image(), config.size, config.channels)
            seen += 1
            if last is not None and seen > last:
                break
    return seen, kept
