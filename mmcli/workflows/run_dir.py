"""Open a run directory: its resolved recipe, fitted processors and trained model."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mmcli.errors import DataError, MmcliWarning
from mmcli.recipe.loader import validate_recipe
from mmcli.runs import BEST_CHECKPOINT, PREPROCESSING_FILE, RECIPE_FILE, read_json, recipe_edited


@dataclass
class LoadedRun:
    run_dir: Path
    recipe: Any
    preprocessing: dict
    model: Any
    checkpoint: dict
    data: dict


def existing_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, or a one-line error when there is no such folder (checked before taking
    its lock, which would otherwise leave a lock file beside a mistyped path)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: not a run directory (no such folder)", hint="pass the folder 'mmcli finetune' wrote, e.g. runs/quickstart")
    return run_dir


def require_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, or a one-line error when it is not a run directory."""
    run_dir = Path(run_dir)
    for needed in (RECIPE_FILE, PREPROCESSING_FILE):
        if not (run_dir / needed).is_file():
            raise DataError(f"{run_dir}: not a run directory (no {needed})", hint="pass the folder 'mmcli finetune' wrote, e.g. runs/quickstart")
    return run_dir


def run_recipe(run_dir: Path) -> Any:
    """The recipe a run saved, or one line naming the file when it is no longer readable."""
    path = run_dir / RECIPE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid YAML any more ({' '.join(str(error).split())[:120]})",
                        hint="restore the file the run wrote, or train the run again") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a recipe (a YAML mapping)", hint="restore the file the run wrote")
    if recipe_edited(run_dir):
        import warnings

        warnings.warn(f"{path}: the run's recipe no longer matches what it was trained with (edited after "
                      "training); it is used as it is now", MmcliWarning, stacklevel=2)
    return validate_recipe(data)


def resolved_paths(recipe: Any) -> Any:
    """A copy of ``recipe`` whose paths (``data.manifest``, ``data.cache_dir``, ``init``) are absolute, as
    the run records them: the run is then usable from any working directory."""
    recipe = recipe.model_copy(deep=True)
    recipe.data.manifest = str(Path(recipe.data.manifest).resolve())
    recipe.data.cache_dir = str(Path(recipe.data.cache_dir).resolve())
    if recipe.init:
        recipe.init = str(Path(recipe.init).resolve())
    return recipe


def open_run(run_dir: str | Path) -> LoadedRun:
    from mmcli.model import build_model
    from mmcli.training.checkpoints import load_weights

    run_dir = require_run_dir(run_dir)
    recipe = run_recipe(run_dir)
    preprocessing = read_json(run_dir / PREPROCESSING_FILE)
    model = build_model(recipe, preprocessing)
    checkpoint = load_weights(run_dir / BEST_CHECKPOINT, model)
    model.eval()
    data = read_json(run_dir / "data.json") if (run_dir / "data.json").is_file() else {}
    return LoadedRun(run_dir, recipe, preprocessing, model, checkpoint, data)


def split_dataset(run: LoadedRun, split: str, num_proc: int = 1, quiet: bool = True) -> Any:
    """The cached split the run was trained from, or the manifest re-decoded with the run's processors."""
    cache = Path(run.data.get("cache", ""))
    if cache.is_dir() and (cache / "summary.json").is_file():
        from mmcli.data.cached_split import cached_split_names, open_cached_split

        names = cached_split_names(cache / "dataset")
        if split in names:
            return open_cached_split(cache / "dataset", split)
    else:
        datasets = _redecode(run, num_proc, quiet)
        names = list(datasets)
        if split in names:
            return datasets[split]
    raise DataError(f"split '{split}' is not in the data (splits: {', '.join(sorted(names))})", hint="pass --split with one of them")


def _redecode(run: LoadedRun, num_proc: int, quiet: bool) -> dict[str, Any]:
    """The cache is gone: decode the manifest again with the run's fitted processors (never refit)."""
    import numpy as np

    from mmcli.data.manifest import assign_splits, read_manifest, row_ids

    data = run.recipe.data
    manifest = Path(data.manifest)
    if not manifest.is_absolute() and not manifest.is_file():  # a run written before runs recorded absolute paths
        raise DataError(f"{run.run_dir}: its cache is gone and its manifest '{manifest}' is relative to the folder "
                        "it was trained from", hint="run the command from that folder, or pass --manifest")
    table = read_manifest(manifest)
    splits = assign_splits(table, data.split_column, data.split_ratios, run.recipe.seed)
    ids = row_ids(table, data.id_column, manifest)
    prepared = _prepare_with_run(run, run.recipe, table, manifest.parent, splits, ids, str(manifest), num_proc, quiet,
                                 labels=True)  # the rows as preprocess kept them
    return {name: prepared.dataset.select(np.flatnonzero(prepared.keep & (splits == name)))
            for name in sorted(set(map(str, splits)))}


def _prepare_with_run(run: LoadedRun, recipe: Any, table: Any, base_dir: Path, splits: Any, ids: list[str], where: str,
                      num_proc: int, quiet: bool, labels: bool = False) -> Any:
    """``prepare_rows`` with the run's fitted processors (never refit), into a temporary folder that
    lives until the process exits (the returned dataset memory-maps it)."""
    from mmcli.data.preprocess import prepare_rows

    workdir = Path(tempfile.mkdtemp(prefix="mmcli-rows-"))
    atexit.register(shutil.rmtree, workdir, True)
    return prepare_rows(recipe, table, base_dir, splits, ids, workdir, run.preprocessing, num_proc, quiet, where, labels)


@dataclass
class ManifestRows:
    """Rows of another manifest decoded with a run's processors: ``dataset`` holds the good rows,
    ``records`` the skipped ones (one error record each), ``ids`` every row's id."""

    dataset: Any
    records: list[dict]
    ids: list[str]
    kept: Any


def decode_rows(run: LoadedRun, recipe: Any, table: Any, base_dir: Path, split: str, ids: list[str], where: str,
                num_proc: int = 1, quiet: bool = True, labels: bool = False) -> ManifestRows:
    """Decode ``table`` (every row counts as ``split``) with the run's fitted processors and label
    encoders; ``recipe`` is the run's own or a copy marking inputs optional."""
    import numpy as np

    splits = np.array([split] * len(table), dtype=object)
    prepared = _prepare_with_run(run, recipe, table, base_dir, splits, ids, where, num_proc, quiet, labels)
    kept = np.flatnonzero(prepared.keep)
    return ManifestRows(prepared.dataset.select(kept), prepared.records, ids, kept)


def manifest_rows(run: LoadedRun, manifest: str | Path, split: str, num_proc: int = 1, quiet: bool = True,
                  with_targets: bool = False, inputs_optional: bool = False) -> ManifestRows:
    """Every row of another ``manifest`` (its split column is ignored) decoded with the run's
    processors; with ``with_targets`` the task columns must be there and the run's ``data.on_error``
    decides what a bad row does (otherwise it is skipped and listed); with ``inputs_optional`` an empty
    cell is a missing input, not a bad row (a text alone, an image alone)."""
    from mmcli.data.manifest import read_manifest, require_columns

    recipe, manifest = run.recipe.model_copy(deep=True), Path(manifest)
    if not with_targets:  # answers: a row that cannot be read is listed; the others are still answered
        recipe.data.on_error = "skip"
    # scores keep the run's data.on_error: a metric over silently fewer rows would mislead
    if inputs_optional:
        for cfg in recipe.inputs.values():
            cfg.optional = True
    table = read_manifest(manifest)
    needed = {cfg.column: f"inputs.{name}.column" for name, cfg in recipe.inputs.items()}
    if with_targets:
        needed |= {cfg.column: f"tasks.{name}.column" for name, cfg in recipe.tasks.items()}
    else:  # answers need no labels: a label the model never saw is no reason to skip a row
        keep = {cfg.column for cfg in recipe.inputs.values()}
        keep |= {recipe.tasks[name].column for name, task in run.model.tasks.items()
                 if getattr(task, "codec_reads_prompts", False)}  # a conversation is the prompt
        table = table.drop(columns=[cfg.column for cfg in recipe.tasks.values()
                                    if cfg.column in table.columns and cfg.column not in keep])
    require_columns(table, needed, manifest)
    id_column = recipe.data.id_column
    ids = table[id_column].astype(str).tolist() if id_column and id_column in table.columns else [str(i) for i in range(len(table))]
    return decode_rows(run, recipe, table, manifest.parent, split, ids, str(manifest), num_proc, quiet, labels=with_targets)


def rows_table(recipe: Any, rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The rows as a manifest table (input name -> its column); an input some row leaves out is
    optional, so it is missing there rather than a bad row."""
    unknown = sorted({name for row in rows for name in row if name not in recipe.inputs})
    if unknown:
        raise DataError(f"this run has no input '{unknown[0]}' (inputs: {', '.join(recipe.inputs)})")
    recipe = recipe.model_copy(deep=True)
    recipe.data.on_error = "skip"  # a row that cannot be read gets its own error, the others their answers
    records: list[dict[str, Any]] = [{} for _ in rows]
    for name, cfg in recipe.inputs.items():
        if any(row.get(name) is None for row in rows):
            cfg.optional = True
        for record, row in zip(records, rows):
            record[cfg.column] = row.get(name)
    import pandas as pd

    return recipe, pd.DataFrame(records, dtype=object)
