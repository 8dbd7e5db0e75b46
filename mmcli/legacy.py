"""Reading what mmcli 0.1 wrote: its checkpoints (format 1) named the model's parts ``encoders``,
``attention``, ``fusion``, ``tasks``, ``unimodal``, ``corruption_gate`` and ``missing_fallback`` at the
top level; format 2 has ``backbone``, ``objectives``, ``weighting`` and ``wrappers``. The weights
themselves are unchanged, so a format-1 best checkpoint loads after its keys are renamed."""

from __future__ import annotations

import re

from torch import Tensor

_RENAMES = [  # (pattern, replacement), first match wins
    (re.compile(r"^(encoders|attention|fusion)\."), r"backbone.\1."),
    (re.compile(r"^tasks\.([^.]+)\.heads\.([^.]+)\.head\."), r"objectives.\1.heads.\2."),  # late fusion's heads
    (re.compile(r"^tasks\.([^.]+)\.head\."), r"objectives.\1.head."),
    (re.compile(r"^unimodal\.heads\.([^.]+)\.([^.]+)\.head\."), r"objectives.unimodal.heads.\1.\2."),
    (re.compile(r"^corruption_gate\."), r"objectives.corruption_gate."),
    (re.compile(r"^missing_fallback\."), r"wrappers.missing_fallback."),
]


def format1_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A format-1 state dict with format-2 keys."""
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in _RENAMES:
            new, count = pattern.subn(replacement, key)
            if count:
                key = new
                break
        renamed[key] = value
    return renamed


FUSION = "backbone.fusion."


def without_unread_fusion(state: dict[str, Tensor], own: set[str]) -> dict[str, Tensor]:
    """Runs trained before the fusion was built only when an objective reads it (a pretraining stage, a
    captioning task) saved an untrained fusion: a model without one leaves those weights out."""
    if any(key.startswith(FUSION) for key in own):
        return state
    return {key: value for key, value in state.items() if not key.startswith(FUSION)}
