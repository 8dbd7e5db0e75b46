"""Image input: a path -> uint8 ``[C, S, S]`` plus a ``[1]`` mask; fit learns pixel mean/std."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mmcli.data.processors.base import FixedShapeColumns, MediaError, media_path, pil_to_array
from mmcli.data.processors.pixels import PixelStatistics
from mmcli.registries import PROCESSORS
from mmcli.settings import Settings


class ImageConfig(Settings):
    size: int = Field(32, ge=1, description="images are resized to size x size (bilinear, antialiased)")
    channels: Literal[1, 3] = Field(3, description="1 = grayscale, 3 = RGB (any input mode is converted)")
    max_pixels: int = Field(40_000_000, ge=1, description="larger images are rejected (decompression bombs)")


@PROCESSORS.register("image", ImageConfig)
class ImageProcessor(PixelStatistics, FixedShapeColumns):
    """Columns: ``name`` uint8 ``[C, S, S]``, ``name_mask`` bool ``[1]``. Normalisation happens in the encoder."""

    modality = "image"
    config_class = ImageConfig
    array_dtype = "uint8"

    config: ImageConfig

    def decode(self, value: Any, base_dir: Path) -> dict[str, np.ndarray]:
        path = media_path(value, base_dir, "image")
        return {self.name: read_image(path, self.config, str(value).strip()), self.mask_name: np.ones(1, dtype=bool)}

    def array_shape(self) -> tuple[int, ...]:
        return self.config.channels, self.config.size, self.config.size

    def mask_length(self) -> int:
        return 1


def read_image(path: Path, config: ImageConfig, shown: str) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces PIL's global bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                # Image.open reads only the header, so the size check happens before decoding.
                width, height = image.size
                if width * height > config.max_pixels:
                    raise MediaError(
                        f"image too large: {width}x{height} pixels exceeds max_pixels={config.max_pixels} "
                        f"(possible decompression bomb): {shown}"
                    )
                if width == 0 or height == 0:
                    raise MediaError(f"image has no pixels: {shown}")
                # JPEG can decode at a reduced scale (still >= the target size): much faster for photos.
                image.draft("RGB" if config.channels == 3 else "L", (config.size, config.size))
                image.load()
                image = ImageOps.exif_transpose(image)
                return pil_to_array(image, config.size, config.channels)
    except MediaError:
        raise
    except Image.DecompressionBombError as err:
        raise MediaError(f"image too large (possible decompression bomb): {shown}") from err
    except UnidentifiedImageError as err:
        raise MediaError(f"not an image (unrecognised format): {shown}") from err
    except (OSError, ValueError, SyntaxError) as err:
        # Truncated/corrupt files surface as OSError ("image file is truncated") or SyntaxError.
        raise MediaError(f"cannot decode image {shown}: {err}") from err
