"""Run-directory layout and atomic writes (write to a temporary file, fsync, rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

RECIPE_FILE = "recipe.yaml"
ENV_FILE = "env.json"
PREPROCESSING_FILE = "preprocessing.json"
METRICS_FILE = "metrics.json"
CHECKPOINTS = "checkpoints"  # full checkpoints step-N/ (exact resume) and best/
BEST_CHECKPOINT = "checkpoints/best"
MODEL_WEIGHTS = "model.safetensors"
MODEL_INFO = "model.json"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def environment_record(seed: int, argv: list[str] | None = None) -> dict[str, Any]:
    """Versions, seed, git commit and command line: what a re-run needs to match this one."""
    import platform
    import subprocess
    import sys
    from importlib import metadata

    packages = {}
    for name in ("mmcli", "torch", "torchvision", "torchaudio", "transformers", "tokenizers", "datasets",
                 "evaluate", "accelerate", "safetensors", "numpy", "soundfile", "av", "pydantic"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"seed": seed, "python": sys.version.split()[0], "platform": platform.platform(), "packages": packages,
            "git_commit": commit, "command": argv if argv is not None else sys.argv}
