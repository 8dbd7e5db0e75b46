"""Shared pieces of the input processors: the media error, path checks, fixed-shape columns, pixel helpers."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np


from mmcli.cells import is_missing
from mmcli.errors import BadValue

# A manifest cell that cannot be turned into arrays (the pipeline adds the row and column, then fails
# or skips the row); one class with the target codecs' bad values, so one handler counts both.
MediaError = BadValue


def media_path(value: Any, base_dir: Path | str, kind: str) -> Path:
    """Resolve a manifest path relative to ``base_dir``; the file must exist, be non-empty
    and stay inside ``base_dir``.

    The containment check is lexical (``..`` and absolute paths), not through symlinks, so a
    user may symlink a media folder next to the manifest; what it rejects is a manifest that
    points at arbitrary files on the machine.
    """
    if is_missing(value):
        raise MediaError(f"empty {kind} path")
    if not isinstance(value, (str, os.PathLike)):
        raise MediaError(f"{kind} path is not a string: {value!r}")
    shown = str(value).strip()
    base = os.path.abspath(base_dir)
    full = os.path.normpath(os.path.join(base, shown))
    if os.path.commonpath([base, full]) != base:
        raise MediaError(f"{kind} path escapes the manifest folder: {shown}")
    path = Path(full)
    if not path.exists():
        raise MediaError(f"{kind} file not found: {shown}")
    if not path.is_file():
        raise MediaError(f"{kind} path is not a file: {shown}")
    if path.stat().st_size == 0:
        raise MediaError(f"{kind} file is empty (0 bytes): {shown}")
    return path


class FixedShapeColumns(ABC):
    """A processor whose ``decode`` writes the cache's final columns: one array of a fixed shape and dtype
    and a mask of a fixed length. The empty row and the column types follow from those."""

    array_dtype: ClassVar[str]
    name: str
    mask_name: str

    @abstractmethod
    def array_shape(self) -> tuple[int, ...]:
        """The shape of one row's array."""

    @abstractmethod
    def mask_length(self) -> int:
        """The length of one row's mask."""

    def missing(self) -> dict[str, np.ndarray]:
        return {self.name: np.zeros(self.array_shape(), dtype=self.array_dtype),
                self.mask_name: np.zeros(self.mask_length(), dtype=bool)}

    def decoded_features(self) -> dict[str, Any]:
        return self.features()

    def features(self) -> dict[str, Any]:
        import datasets

        shape = self.array_shape()
        array = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D}[len(shape)]
        return {self.name: array(shape, self.array_dtype),
                self.mask_name: datasets.Sequence(datasets.Value("bool"), length=self.mask_length())}


def pil_to_array(image: Any, size: int, channels: int) -> np.ndarray:
    """Any PIL image -> uint8 ``[C, size, size]`` (bilinear; PIL antialiases when shrinking)."""
    from PIL import Image

    image = _to_8bit(image)
    if image.mode == "P":
        # Palette images may carry transparency; going through RGBA avoids PIL's warning.
        image = image.convert("RGBA")
    image = image.convert("RGB" if channels == 3 else "L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if channels == 1:
        return array[None, :, :].copy()
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _to_8bit(image: Any) -> Any:
    """16-bit / 32-bit / float images -> 8-bit "L": PIL's own conversion clips instead of scaling."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and array.size and array.max() <= 1.0 else 65535.0
        if image.mode == "I" and array.size and array.max() <= 255:
            top = 255.0
        array = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(array, mode="L")
    return image


def _chunks(x: Any, mask: Any, rows: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Iterate over (data, mask) row chunks so stats never hold the train set in float64."""
    n = len(x)
    for start in range(0, n, rows):
        yield np.asarray(x[start : start + rows]), np.asarray(mask[start : start + rows], dtype=bool)


def pixel_stats(x: Any, mask: Any, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of pixels in [0, 1] over real items.

    ``x`` is ``[N, C, S, S]`` (image, mask ``[N, 1]``) or ``[N, K, C, S, S]`` (video, mask ``[N, K]``).
    With nothing to fit, returns mean 0 / std 1 so normalisation is the identity.
    """
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for data, keep in _chunks(x, mask):
        if data.size == 0:
            continue
        if data.ndim == 4:  # image: one item per row
            items = data[keep.reshape(len(data), -1).any(axis=1)]
        else:  # video: one item per real frame
            items = data[keep]
        if len(items) == 0:
            continue
        pixels = items.astype(np.float64) / 255.0  # [M, C, S, S]
        total += pixels.sum(axis=(0, 2, 3))
        total_sq += (pixels**2).sum(axis=(0, 2, 3))
        count += pixels.shape[0] * pixels.shape[2] * pixels.shape[3]
    if count == 0:
        return [0.0] * channels, [1.0] * channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return [float(m) for m in mean], [float(max(s, 1e-3)) for s in std]


def config_from_spec(config_cls: type, spec: dict[str, Any]) -> Any:
    """Rebuild a processor config from ``spec["config"]`` (specs nest the config there)."""
    if "config" not in spec:
        raise ValueError("processor spec has no 'config' entry")
    return config_cls(**spec["config"])


def require_fitted(state: Any, name: str) -> None:
    if state is None:
        raise RuntimeError(f"processor for input '{name}' is not fitted: call fit() or load_spec() first")
