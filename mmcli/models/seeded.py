"""Seeded initialisation per component: each part of a model draws its initial weights from a generator
seeded by the run's seed and the part's name (``encoders.image``, ``tasks.scene``, ``fusion``), so adding,
removing or reordering parts never changes another part's initial weights."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import torch


def component_seed(seed: int, name: str) -> int:
    """A 63-bit seed for component ``name`` of a run seeded with ``seed`` (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{seed}/{name}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded(seed: int, name: str) -> Iterator[None]:
    """Inside, torch's CPU generator is seeded for ``name``; afterwards it is as it was (the draws of the
    rest of the run do not depend on which components the model has)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(component_seed(seed, name))
        yield
