"""The project's registries. Components register themselves on import of their package."""

from __future__ import annotations

from mmcli.registry import Registry

MODALITIES = ("text", "image", "audio", "video")

# Input processors (raw media -> arrays), one per modality; package modules register here.
PROCESSORS: Registry = Registry("modality", "mmcli.data.processors")

# Encoders: one registry per modality, all filled by the modules of mmcli.models.encoders.
ENCODERS: dict[str, Registry] = {
    modality: Registry(f"{modality} encoder", "mmcli.models.encoders") for modality in MODALITIES
}
DEFAULT_ENCODER = {"text": "transformer", "image": "cnn", "audio": "cnn", "video": "frames"}

FUSIONS: Registry = Registry("fusion", "mmcli.models.fusion")

# Task types: each owns its head, loss, metrics and decoding.
TASKS: Registry = Registry("task type", "mmcli.models.heads")
ATTENTIONS: Registry = Registry("attention", "mmcli.models.attention")
