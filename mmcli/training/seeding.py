"""Seeds and deterministic settings, so the same recipe twice gives the same metrics."""

from __future__ import annotations

import torch


def seed_everything(seed: int) -> None:
    from accelerate.utils import set_seed

    set_seed(seed, deterministic=False)
    # Deterministic kernels where PyTorch has them; warn (not fail) where it does not.
    torch.use_deterministic_algorithms(True, warn_only=True)
    # The mode also fills every new uninitialised tensor with NaN, a bug detector that costs each step
    # memory bandwidth (a few percent here) and changes nothing for code that never reads such memory.
    torch.utils.deterministic.fill_uninitialized_memory = False
