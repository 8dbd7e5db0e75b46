"""What image and video inputs share: uint8 pixels kept as decoded, per-channel mean/std fitted
on the train split and stored in the spec (the encoder normalises with them)."""

from __future__ import annotations

from typing import Any, ClassVar

from mmcli.data.processors.base import config_from_spec, pixel_stats, require_fitted


class PixelStatistics:
    transforms = False  # transform() is the identity: nothing to run after fit
    modality: ClassVar[str]
    config_class: ClassVar[type]

    config: Any
    name: str
    mask_name: str
    mean: list[float] | None
    std: list[float] | None

    def __init__(self, config: Any, name: str) -> None:
        self.config = config
        self.name = name
        self.mask_name = f"{name}_mask"
        self.mean = None
        self.std = None

    def fit(self, train: dict[str, Any]) -> None:
        self.mean, self.std = pixel_stats(train[self.name], train[self.mask_name], self.config.channels)

    def transform(self, columns: dict[str, Any]) -> dict[str, Any]:
        return columns

    def shape_spec(self) -> dict[str, Any]:
        return {"channels": self.config.channels, "size": self.config.size}

    def spec(self) -> dict[str, Any]:
        require_fitted(self.mean, self.name)
        return {"modality": self.modality, "config": self.config.model_dump(), **self.shape_spec(),
                "mean": list(self.mean), "std": list(self.std)}  # type: ignore[arg-type]

    def load_spec(self, spec: dict[str, Any]) -> None:
        self.config = config_from_spec(self.config_class, spec)
        self.mean = [float(v) for v in spec["mean"]]
        self.std = [float(v) for v in spec["std"]]
