"""Training callbacks, one file each: checkpoints, progress, objectives' schedules, batch transforms
(augmentation, modality dropout and noise); plug-ins add their own. The contract is in ``base``."""

from __future__ import annotations

from typing import Any

from mmcli.registries import OBJECTIVES, active_plugins
from mmcli.training.callbacks.base import Callback


def default_callbacks(recipe: Any, preprocessing: dict | None) -> list[Callback]:
    """The callbacks a recipe's training runs with: checkpoints and progress, the batch transforms its
    ``training`` keys and its inputs' ``augment`` ask for, and every plug-in's."""
    from mmcli.training.callbacks.augmentation import Augmentation, augmented_inputs
    from mmcli.training.callbacks.checkpointing import Checkpointing
    from mmcli.training.callbacks.freeze_encoders import FreezeEncoders
    from mmcli.training.callbacks.frozen_parts import KeepFrozenInEvaluation
    from mmcli.training.callbacks.modality_dropout import ModalityDropout
    from mmcli.training.callbacks.modality_noise import ModalityNoise, noise_inputs
    from mmcli.training.callbacks.objective_schedule import ObjectiveSchedule
    from mmcli.training.callbacks.precompute_frozen import PrecomputeFrozen
    from mmcli.training.callbacks.progress import Progress
    from mmcli.training.callbacks.run_log import RunLog
    from mmcli.training.callbacks.task_calibration import TaskCalibration
    from mmcli.training.callbacks.trackers import Trackers
    from mmcli.training.callbacks.weighting_schedule import WeightingSchedule

    cfg = recipe.training
    callbacks: list[Callback] = [PrecomputeFrozen(), WeightingSchedule(), Checkpointing(), Progress(), RunLog(),
                                 ObjectiveSchedule()]
    if any(callable(getattr(OBJECTIVES.get(task.type), "calibrate", None)) for task in recipe.tasks.values()):
        callbacks.append(TaskCalibration())
    if cfg.trackers:
        callbacks.append(Trackers())
    if cfg.freeze or cfg.adapters is not None:
        callbacks.append(KeepFrozenInEvaluation())
    if cfg.freeze_encoders:
        callbacks.append(FreezeEncoders(cfg.freeze_encoders))
    augmented = augmented_inputs(recipe, preprocessing)
    if augmented:
        callbacks.append(Augmentation(augmented, recipe.seed))
    if cfg.modality_dropout > 0:
        callbacks.append(ModalityDropout(list(recipe.inputs), cfg.modality_dropout))
    if cfg.modality_noise > 0:
        callbacks.append(ModalityNoise(noise_inputs(recipe, preprocessing, "training.modality_noise"), cfg.modality_noise))
    for plugin in active_plugins():
        callbacks.extend(plugin.callbacks(recipe, preprocessing))
    return callbacks
