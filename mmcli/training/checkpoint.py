"""Checkpoints are safetensors (weights) plus JSON (everything else); never pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mmcli import __version__
from mmcli.errors import DataError
from mmcli.legacy import format1_state
from mmcli.model import CHECKPOINT_FORMAT
from mmcli.runs import MODEL_INFO, MODEL_WEIGHTS, atomic_write_bytes, atomic_write_json, read_json


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as safetensors can store it: on the CPU, contiguous, and a tensor that appears
    under two names (an encoder shared by two inputs) stored as a copy under the second."""
    out, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.data_ptr() in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        out[name] = tensor
    return out


def save_checkpoint(directory: Path, model: torch.nn.Module, info: dict[str, Any]) -> Path:
    """Write weights then metadata, each atomically; metadata last marks the checkpoint complete."""
    state = state_tensors(model)
    atomic_write_bytes(directory / MODEL_WEIGHTS, save_safetensors(state))
    atomic_write_json(directory / MODEL_INFO, {**info, "format": CHECKPOINT_FORMAT, "mmcli": __version__})
    return directory


def load_weights(directory: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load a checkpoint folder's weights into ``model`` (strictly) and return its metadata. Format-1
    checkpoints (mmcli 0.1) are read with their keys renamed; newer formats are refused in one line."""
    state = read_state(directory)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise DataError(f"{directory / MODEL_WEIGHTS}: weights do not fit this run's model: "
                        f"{' '.join(str(error).split())[:200]}") from error
    return read_json(directory / MODEL_INFO)


def read_state(directory: Path) -> dict[str, torch.Tensor]:
    """A checkpoint folder's state dict, in the current format."""
    weights, info_file = directory / MODEL_WEIGHTS, directory / MODEL_INFO
    if not weights.is_file() or not info_file.is_file():
        raise DataError(f"{directory}: no complete checkpoint (needs {MODEL_WEIGHTS} and {MODEL_INFO})",
                        hint="train first with 'mmcli finetune RECIPE'")
    info = read_json(info_file)
    written = int(info.get("format", 1))
    if written > CHECKPOINT_FORMAT:
        raise DataError(f"{directory}: written by mmcli {info.get('mmcli', '?')} (checkpoint format {written}); this "
                        f"mmcli {__version__} reads formats 1 to {CHECKPOINT_FORMAT}", hint="upgrade mmcli")
    try:
        state = load_safetensors(weights.read_bytes())
    except SafetensorError as error:
        # Never fall back to torch.load: a pickle can run code when loaded.
        raise DataError(f"{weights}: not a safetensors file ({error}); mmcli never loads pickled checkpoints",
                        hint="retrain, or convert the weights to safetensors") from error
    return format1_state(state) if written == 1 else state
