"""Checkpoints are safetensors (weights) plus JSON (everything else); never pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mmcli.errors import DataError
from mmcli.runs import MODEL_INFO, MODEL_WEIGHTS, atomic_write_bytes, atomic_write_json, read_json


def save_checkpoint(directory: Path, model: torch.nn.Module, info: dict[str, Any]) -> Path:
    """Write weights then metadata, each atomically; metadata last marks the checkpoint complete."""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_bytes(directory / MODEL_WEIGHTS, save_safetensors(state))
    atomic_write_json(directory / MODEL_INFO, info)
    return directory


def load_weights(directory: Path, model: torch.nn.Module) -> dict[str, Any]:
    weights, info = directory / MODEL_WEIGHTS, directory / MODEL_INFO
    if not weights.is_file() or not info.is_file():
        raise DataError(f"{directory}: no complete checkpoint (needs {MODEL_WEIGHTS} and {MODEL_INFO})",
                        hint="train first with 'mmcli finetune RECIPE'")
    state = load_safetensors(weights.read_bytes())
    model.load_state_dict(state, strict=True)
    return read_json(info)
