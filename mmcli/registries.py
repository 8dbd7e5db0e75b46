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

ATTENTIONS: Registry = Registry("attention", "mmcli.models.attention")

# Objectives: supervised task types (``supervised = True``: head, target codec, loss, metrics,
# decoding; recipe section ``tasks``) and other losses on the representation (section ``objectives``).
OBJECTIVES: Registry = Registry("objective", "mmcli.objectives")

# How the objectives' losses are combined into the one the optimizer minimises (training.loss_weighting).
LOSS_WEIGHTINGS: Registry = Registry("loss weighting", "mmcli.weighting")

# Plug-ins: features that read their own recipe keys and add objectives, inference wrappers and
# training callbacks, so that the backbone, the trainer and the objectives' contract never name them.
PLUGINS: Registry = Registry("plug-in", "mmcli.plugins")


def active_plugins() -> list:
    """One instance of every registered plug-in, in name order (the core finds plug-ins only here)."""
    return [PLUGINS.get(name)() for name in PLUGINS.names()]
