"""Built-in synthetic datasets (``mmcli make-dataset``): small, deterministic, multimodal.

Importing this package is light (numpy only); media libraries are imported when files are written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mmcli.data.synthetic.registry import DATASETS
from mmcli.errors import MmcliError
from mmcli.runs import atomic_write_json

__all__ = ["DATASETS", "list_datasets", "make_dataset"]

MARKER = ".mmcli-dataset.json"  # written beside the manifest: which generator made this folder


def list_datasets() -> list[dict[str, str]]:
    """``[{"name", "description"}]`` of the built-in datasets."""
    return [{"name": name, "description": DATASETS.describe(name)} for name in DATASETS.names()]


def _check_folder(name: str, out_dir: Path, force: bool) -> None:
    """A folder that holds anything but a previous output of the same generator is someone's files."""
    if force or not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    marker = out_dir / MARKER
    try:
        made_by = json.loads(marker.read_text()).get("generator") if marker.is_file() else None
    except (OSError, ValueError):
        made_by = None
    if made_by != name:
        what = f"a '{made_by}' dataset" if made_by else "files mmcli did not write"
        raise MmcliError(f"{out_dir}: not empty, it holds {what}; writing the '{name}' dataset would overwrite them",
                         hint="choose an empty or new folder, or pass --force to write into it anyway")


def make_dataset(
    name: str, out_dir: Path, size: int = 2000, seed: int = 0, num_workers: int = 1, force: bool = False
) -> dict[str, Any]:
    """Write dataset ``name`` (``manifest.csv`` plus media) into ``out_dir``; return a summary.

    The summary holds ``name``, ``rows``, ``manifest`` (path), ``splits`` (rows per split) and
    ``seconds``. Same ``size`` and ``seed`` give byte-identical files, whatever ``num_workers``.
    A folder that is not empty is refused unless it holds a previous output of the same generator,
    or ``force``.
    """
    make = DATASETS.get(name)  # unknown name -> MmcliError listing the known ones
    if size < 1:
        raise MmcliError(f"dataset size must be at least 1, got {size}")
    if seed < 0:
        raise MmcliError(f"seed must be 0 or more, got {seed}")
    if num_workers < 1:
        raise MmcliError(f"num_workers must be at least 1, got {num_workers}")
    out_dir = Path(out_dir)
    _check_folder(name, out_dir, force)
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / MARKER, {"generator": name, "size": size, "seed": seed})
    summary = make(out_dir, size, seed, num_workers)
    return {"name": name, **summary, "seconds": round(time.perf_counter() - start, 3)}
