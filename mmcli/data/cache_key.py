"""The preprocessing cache key: a hash of the data and of every preprocessing setting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

CACHE_FORMAT = 1


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def media_fingerprint(table: pd.DataFrame, media_columns: list[str], base_dir: Path) -> str:
    """Hash of (path, size, mtime) of every media file: a changed file invalidates the cache,
    as with make; hashing every byte of a large media set on each run would cost more than it saves."""
    digest = hashlib.sha256()
    for column in media_columns:
        for value in table[column].tolist():
            digest.update(str(value).encode())
            if value is None:
                continue
            try:
                stat = (base_dir / str(value)).stat()
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            except OSError:
                digest.update(b"missing")
    return digest.hexdigest()


def cache_key(recipe: Any, manifest: Path, table: pd.DataFrame, media_columns: list[str], fitted: dict | None) -> str:
    settings = {
        "format": CACHE_FORMAT,
        "manifest": _file_digest(manifest),
        "media": media_fingerprint(table, media_columns, manifest.parent),
        "inputs": {
            name: {"modality": cfg.modality, "column": cfg.column, "optional": cfg.optional,
                   "preprocessing": cfg.preprocessing.model_dump(mode="json")}
            for name, cfg in sorted(recipe.inputs.items())
        },
        "tasks": {name: cfg.codec_settings() if callable(getattr(cfg, "codec_settings", None))
                  else {"type": cfg.type, "column": cfg.column} for name, cfg in sorted(recipe.tasks.items())},
        **_objective_columns(recipe),
        "data": recipe.data.model_dump(mode="json", exclude={"manifest", "cache_dir", "train_fraction"}),  # fraction: after the cache
        "seed": recipe.seed,
        "fitted": fitted,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _objective_columns(recipe: Any) -> dict[str, Any]:
    """The manifest columns objectives encode (absent from the key when there is none, so caches made
    before objectives could ask for columns stay valid)."""
    from mmcli.data.labels_step import target_columns

    columns = {key: {"type": cfg.type, "column": cfg.column} for key, (where, cfg) in sorted(target_columns(recipe).items())
               if where.startswith("objectives.")}
    return {"objective_columns": columns} if columns else {}
