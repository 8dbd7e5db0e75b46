"""preprocess: validate rows, fit processors on the train split, write a memory-mapped Arrow cache.

The cache folder (``data.cache_dir/<key>``) holds ``dataset/`` (a DatasetDict, one dataset per
split), ``preprocessing.json`` (fitted processors and label encoders), ``errors.jsonl`` and
``summary.json``. It is written to a temporary folder and renamed, so a killed run never
leaves a half-written cache behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from mmcli.data.cache_key import cache_key
from mmcli.data.columns import ID_COLUMN, ROW_COLUMN, SPLIT_COLUMN
from mmcli.data.decode import ERROR_COLUMN, RowDecoder, decode_rows, present_column
from mmcli.data.labels_step import encode_targets, fit_targets, load_targets, target_columns
from mmcli.data.manifest import assign_splits, read_manifest, require_columns, row_ids
from mmcli.errors import DataError
from mmcli.registries import PROCESSORS
from mmcli.runs import PREPROCESSING_FILE, atomic_write_json, atomic_write_jsonl, naming, staged_folder

MAX_ERRORS_SHOWN = 3


@dataclass
class Preprocessed:
    """What preprocess produced: the cache folder and the counts a user should see."""

    cache_dir: Path
    key: str
    reused: bool
    rows: int
    kept: int
    skipped: int
    splits: dict[str, int]
    errors_file: Path
    seconds: float
    preprocessing: dict[str, Any] = field(repr=False, default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"cache": str(self.cache_dir), "key": self.key, "reused_cache": self.reused, "rows": self.rows,
                "kept": self.kept, "skipped": self.skipped, "splits": self.splits,
                "errors_file": str(self.errors_file), "seconds": round(self.seconds, 2)}

    def load(self) -> Any:
        from datasets import load_from_disk

        return load_from_disk(str(self.cache_dir / "dataset"))


def build_processors(recipe: Any, fitted: dict | None = None) -> dict[str, Any]:
    processors = {}
    for name, cfg in recipe.inputs.items():
        processor = PROCESSORS.get(cfg.modality)(cfg.preprocessing, name)
        if fitted is not None:
            processor.load_spec(fitted["inputs"][name]["spec"])
        processors[name] = processor
    return processors


def decode_table(recipe: Any, table: pd.DataFrame, base_dir: Path, processors: dict, splits: np.ndarray,
                 ids: list[str], workdir: Path, num_proc: int = 1, show_progress: bool = False,
                 backend: dict[str, Any] | None = None) -> Any:
    """Decode every row's media once; a Dataset with decoded columns, presence flags and an error column."""
    import datasets
    from datasets import Features, Value

    datasets.disable_progress_bars()  # mmcli shows its own (rich) progress
    columns = {name: cfg.column for name, cfg in recipe.inputs.items()}
    optional = {name for name, cfg in recipe.inputs.items() if cfg.optional}
    needed = sorted(set(columns.values()))
    cells = table[needed].to_dict("records")
    features: dict[str, Any] = {}
    for name, processor in processors.items():
        features.update(processor.decoded_features())
        features[present_column(name)] = Value("bool")
    features[ERROR_COLUMN] = Value("string")
    features.update({ROW_COLUMN: Value("int64"), ID_COLUMN: Value("string"), SPLIT_COLUMN: Value("string")})
    extra = {ROW_COLUMN: list(range(len(table))), ID_COLUMN: list(ids), SPLIT_COLUMN: [str(s) for s in splits]}
    decoder = RowDecoder(processors, columns, optional, base_dir)
    return decode_rows(decoder, cells, Features(features), extra, workdir, num_proc, show_progress, **(backend or {}))


def _fit_processors(processors: dict, train: Any) -> None:
    for name, processor in processors.items():
        present = np.asarray(train[present_column(name)], dtype=bool)
        rows = train.select(np.flatnonzero(present)) if not present.all() else train
        if len(rows) == 0:
            raise DataError(f"input '{name}': no train row has it, so its processor cannot be fitted")
        columns = [c for c in rows.column_names if c == name or c.startswith(f"{name}_")]
        columns = [c for c in columns if c != present_column(name)]
        numpy_rows = rows.with_format("numpy", dtype=None)
        processor.fit({c: numpy_rows[c] for c in columns})


def _transform(dataset: Any, processors: dict, num_proc: int) -> Any:
    for name, processor in processors.items():
        if getattr(processor, "transforms", False):
            dataset = dataset.map(
                processor.transform, batched=True, batch_size=1000,
                features=_transformed_features(dataset.features, processor, name),
                remove_columns=[name], load_from_cache_file=False,
            )
    return dataset


def _transformed_features(features: Any, processor: Any, name: str) -> Any:
    from datasets import Features

    result = {k: v for k, v in features.items() if k != name}
    result.update(processor.features())
    return Features(result)


def _error_records(decoded: Any, label_errors: dict[int, str], ids: list[str], splits: np.ndarray) -> list[dict]:
    messages = decoded[ERROR_COLUMN]
    records = []
    for row, message in enumerate(messages):
        parts = [m for m in (message, label_errors.get(row, "")) if m]
        if parts:
            records.append({"row": row, "id": ids[row], "split": str(splits[row]), "error": "; ".join(parts)})
    return records


def _raise_for_errors(records: list[dict], manifest: Any) -> None:
    shown = "; ".join(f"row {r['row']} (id {r['id']}) {r['error']}" for r in records[:MAX_ERRORS_SHOWN])
    more = f"; and {len(records) - MAX_ERRORS_SHOWN} more" if len(records) > MAX_ERRORS_SHOWN else ""
    raise DataError(f"{manifest}: {len(records)} bad row{'s' if len(records) != 1 else ''}: {shown}{more}",
                    hint="fix them, or set data.on_error=skip to skip and report them")


@dataclass
class PreparedRows:
    dataset: Any
    keep: np.ndarray
    records: list[dict]
    preprocessing: dict[str, Any]


def prepare_rows(recipe: Any, table: pd.DataFrame, base_dir: Path, splits: np.ndarray, ids: list[str], workdir: Path,
                 fitted: dict | None = None, num_proc: int = 1, quiet: bool = True, where: str = "manifest",
                 labels: bool | None = None, backend: dict[str, Any] | None = None) -> PreparedRows:
    """Decode media, fit (or load) processors and label encoders, encode targets, apply data.on_error.

    With ``fitted`` (a run's preprocessing.json) nothing is fitted: the run's processors are
    the only way raw inputs become tensors, and target columns may be absent (prediction).
    ``labels``: the rows must carry their labels (a missing one is a bad row unless the task allows it);
    default: when fitting (training), not with ``fitted`` (prediction).
    """
    processors = build_processors(recipe, fitted)
    decoded = decode_table(recipe, table, base_dir, processors, splits, ids, workdir, num_proc, show_progress=not quiet,
                           backend=backend)
    media_ok = np.array([not m for m in decoded[ERROR_COLUMN]], dtype=bool)
    train_name = recipe.data.train_split
    if fitted is None:
        targets = fit_targets(recipe, table.iloc[np.flatnonzero((splits == train_name) & media_ok)])
    else:
        targets = load_targets(recipe, fitted)
    need = fitted is None if labels is None else labels
    encoded, label_errors = encode_targets(recipe, table, targets, required=fitted is None, labelled=need)
    records = _error_records(decoded, label_errors, ids, splits)
    if records and recipe.data.on_error == "fail":
        _raise_for_errors(records, where)
    bad = {r["row"] for r in records}
    keep = np.array([row not in bad for row in range(len(table))], dtype=bool)
    if fitted is None:
        train_keep = np.flatnonzero(keep & (splits == train_name))
        if len(train_keep) == 0:
            raise DataError(f"{where}: every train row is bad", hint="see the errors in errors.jsonl")
        _fit_processors(processors, decoded.select(train_keep))
    for task, values in encoded.items():
        decoded = decoded.add_column(task, values.tolist(), feature=targets[task].feature())
    decoded = _transform(decoded.remove_columns([ERROR_COLUMN]), processors, num_proc)
    preprocessing = fitted or {
        "inputs": {name: {"modality": cfg.modality, "spec": processors[name].spec()} for name, cfg in recipe.inputs.items()},
        "tasks": {key: {"type": cfg.type, "spec": targets[key].spec()} for key, (_, cfg) in target_columns(recipe).items()},
    }
    return PreparedRows(decoded, keep, records, preprocessing)


def preprocess(recipe: Any, num_proc: int = 1, force: bool = False, quiet: bool = True, backend: str = "local",
               ray_address: str | None = None) -> Preprocessed:
    """Validate, decode, fit and cache the recipe's manifest. Reuses a cache with the same key (whichever
    backend decoded it: ``local`` processes, or ``ray`` — Ray Data, on ``ray_address`` or a local Ray)."""
    start = time.perf_counter()
    manifest = Path(recipe.data.manifest)
    table = read_manifest(manifest)
    needed = {cfg.column: f"inputs.{name}.column" for name, cfg in recipe.inputs.items()}
    needed.update({cfg.column: f"{where}.column" for where, cfg in target_columns(recipe).values()})
    if recipe.data.id_column:
        needed[recipe.data.id_column] = "data.id_column"
    require_columns(table, needed, manifest)
    media = [cfg.column for cfg in recipe.inputs.values() if cfg.modality != "text"]
    key = cache_key(recipe, manifest, table, media, None)
    target = Path(recipe.data.cache_dir) / key
    if (target / "summary.json").is_file() and not force:
        return load_cache(target, key, start)
    with cache_lock(target):  # one builder per cache; the others wait, then reuse what it wrote
        if (target / "summary.json").is_file() and not force:
            return load_cache(target, key, start)
        _remove_stale(target)
        return _build(recipe, table, manifest, key, target, num_proc, quiet, start,
                      {"backend": backend, "ray_address": ray_address})


@contextlib.contextmanager
def cache_lock(target: Path) -> Iterator[None]:
    """An OS lock (``fcntl.flock``, released by the kernel if the holder dies) on one cache key."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_stale(target: Path) -> None:
    """What a killed build of this key left (its decoding folder, its staging folder); safe under the
    key's lock, since no other process is building it."""
    for path in target.parent.glob(f".{target.name}.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _build(recipe: Any, table: pd.DataFrame, manifest: Path, key: str, target: Path, num_proc: int, quiet: bool,
           start: float, backend: dict[str, Any] | None = None) -> Preprocessed:
    splits = assign_splits(table, recipe.data.split_column, recipe.data.split_ratios, recipe.seed)
    ids = row_ids(table, recipe.data.id_column, manifest)
    if not (splits == recipe.data.train_split).any():
        raise DataError(f"{manifest}: no rows in the train split '{recipe.data.train_split}'",
                        hint=f"splits present: {', '.join(sorted(set(map(str, splits))))}; set data.train_split")
    # a full disk while the cache is written names the cache folder (the writers deep inside name no file)
    with naming(target.parent), tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{key}.work.") as workdir:
        prepared = prepare_rows(recipe, table, manifest.parent, splits, ids, Path(workdir), None, num_proc, quiet,
                                where=str(manifest), backend=backend)
        return _write_cache(target, key, prepared.dataset, splits, prepared.keep, prepared.records,
                            prepared.preprocessing, len(table), start)


def load_cache(target: Path, key: str, start: float | None = None) -> Preprocessed:
    info = json.loads((target / "summary.json").read_text())
    return Preprocessed(cache_dir=target, key=key, reused=True, rows=info["rows"], kept=info["kept"],
                        skipped=info["skipped"], splits=info["splits"], errors_file=target / "errors.jsonl",
                        seconds=time.perf_counter() - start if start else 0.0,
                        preprocessing=json.loads((target / PREPROCESSING_FILE).read_text()))


def _write_cache(target: Path, key: str, decoded: Any, splits: np.ndarray, keep: np.ndarray, records: list[dict],
                 preprocessing: dict, rows: int, start: float) -> Preprocessed:
    from datasets import DatasetDict

    names = sorted({str(s) for s in splits[keep]})
    by_split = DatasetDict({name: decoded.select(np.flatnonzero(keep & (splits == name))) for name in names})
    with staged_folder(target) as staging:
        by_split.save_to_disk(str(staging / "dataset"))
        atomic_write_json(staging / PREPROCESSING_FILE, preprocessing)
        atomic_write_jsonl(staging / "errors.jsonl", records)
        counts = {name: len(by_split[name]) for name in names}
        summary = {"rows": rows, "kept": int(keep.sum()), "skipped": len(records), "splits": counts}
        atomic_write_json(staging / "summary.json", summary)
    return Preprocessed(cache_dir=target, key=key, reused=False, rows=rows, kept=int(keep.sum()), skipped=len(records),
                        splits=counts, errors_file=target / "errors.jsonl", seconds=time.perf_counter() - start,
                        preprocessing=preprocessing)
