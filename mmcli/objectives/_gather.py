"""Gathering a batch-level tensor from every process for losses whose negatives are other rows."""

from __future__ import annotations

import torch
from torch import Tensor


def process_group() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_local_grad(x: Tensor) -> Tensor:
    """Every process's ``x`` concatenated in rank order; the gradient flows through this process's own
    slice only (the others arrive detached), as in OpenCLIP's ``gather_with_grad=False``. Every process
    must call it with the same shape (the sampler gives every process equally many rows)."""
    import torch.distributed as dist

    rank, world = process_group()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)
