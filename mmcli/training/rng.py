"""The random number generators of one process (torch, CUDA, numpy, Python) as safetensors tensors plus
JSON, for full checkpoints: every process saves its own, so a resumed run draws the same dropout masks
and batch transforms on every rank as the uninterrupted run."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

RngState = tuple[dict[str, torch.Tensor], dict[str, Any]]  # (tensors for safetensors, JSON-able rest)


def capture_rng() -> RngState:
    """This process's generator states."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = value
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Set this process's generators to a state :func:`capture_rng` returned."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, position, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))
