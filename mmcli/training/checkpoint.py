"""Checkpoints are safetensors (weights) plus JSON (everything else); never pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
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
    try:
        state = load_safetensors(weights.read_bytes())
    except SafetensorError as error:
        # Never fall back to torch.load: a pickle can run code when loaded.
        raise DataError(f"{weights}: not a safetensors file ({error}); mmcli never loads pickled checkpoints",
                        hint="retrain, or convert the weights to safetensors") from error
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise DataError(f"{weights}: weights do not fit this run's model: {' '.join(str(error).split())[:200]}") from error
    return read_json(info)
