"""Built-in synthetic datasets (``mmcli make-dataset``): small, deterministic, multimodal.

Importing this package is light (numpy only); media libraries are imported when files are written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmcli.data.synthetic.registry import DATASETS
from mmcli.errors import MmcliError

__all__ = ["DATASETS", "make_dataset"]


def make_dataset(
    name: str, out_dir: Path, size: int = 2000, seed: int = 0, num_workers: int = 1
) -> dict[str, Any]:
    """Write dataset ``name`` (``manifest.csv`` plus media) into ``out_dir``; return a summary.

    The summary holds ``name``, ``rows``, ``manifest`` (path), ``splits`` (rows per split) and
    ``seconds``. Same ``size`` and ``seed`` give byte-identical files, whatever ``num_workers``.
    """
    make = DATASETS.get(name)  # unknown name -> MmcliError listing the known ones
    if size < 1:
        raise MmcliError(f"dataset size must be at least 1, got {size}")
    if seed < 0:
        raise MmcliError(f"seed must be 0 or more, got {seed}")
    if num_workers < 1:
        raise MmcliError(f"num_workers must be at least 1, got {num_workers}")
    start = time.perf_counter()
    summary = make(Path(out_dir), size, seed, num_workers)
    return {"name": name, **summary, "seconds": round(time.perf_counter() - start, 3)}
