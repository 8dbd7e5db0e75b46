"""A recipe checked against its manifest in a second or two, before anything heavy is imported (no torch,
no schema: it reads the recipe as YAML): the manifest is readable, every column the recipe names is there,
the train split has rows, ids are unique, and the media files of a sample of rows exist. What it finds is
what preprocessing would otherwise report after the start-up of a training (``mmcli recipes validate
RECIPE --data``; ``mmcli recipes init`` runs it on the recipe it writes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmcli.errors import DataError, RecipeError

MEDIA = ("image", "audio", "video")
SAMPLE_ROWS = 64  # media files checked per input: enough to catch a wrong folder or extension


def check_recipe_data(name_or_path: str, overrides: list[str] | None = None, sample: int = SAMPLE_ROWS) -> dict[str, Any]:
    """Problems that stop preprocessing raise one ``DataError`` naming them all; with ``data.on_error: skip``
    missing files are warnings (those rows would be skipped)."""
    from mmcli.recipe.loader import read_recipe_dict
    from mmcli.recipe.overrides import apply_overrides

    start = time.perf_counter()
    recipe = apply_overrides(read_recipe_dict(name_or_path), overrides or [])
    data = _section(recipe, "data")
    manifest = data.get("manifest")
    if not isinstance(manifest, str) or not manifest:
        raise RecipeError("data.manifest: the recipe names no manifest")
    table = read_table(Path(manifest))
    problems: list[str] = []
    missing = [f"'{column}' ({key})" for column, key in named_columns(recipe).items() if column not in table]
    if missing:
        problems.append(f"column{'s' if len(missing) > 1 else ''} {', '.join(missing)} not in the manifest "
                        f"(its columns: {', '.join(list(table)[:20])})")
    problems += _split_problems(table, data)
    skip = data.get("on_error") == "skip"
    warnings: list[str] = []
    checked = 0
    for name, cfg in _section(recipe, "inputs").items():
        if not isinstance(cfg, dict) or cfg.get("column") not in table:
            continue
        found, count = _input_problems(table, name, cfg, Path(manifest).parent, sample)
        checked += count
        (warnings if skip else problems).extend(found)
    if problems:
        raise DataError(f"{manifest}: {'; '.join(problems)}",
                        hint="fix the manifest or the recipe (data.on_error: skip skips rows with bad media)")
    return {"manifest": manifest, "rows": len(next(iter(table.values()))), "columns": list(table), "files_checked": checked,
            "seconds": round(time.perf_counter() - start, 3), "warnings": warnings}


def check_columns_early(name_or_path: str, overrides: list[str] | None = None) -> None:
    """The columns a training must find, checked against a CSV or TSV manifest's header before the recipe is
    validated (which imports every component, torch with them): each input's and task's ``column`` and
    ``data.id_column``, the ones preprocessing refuses to go without, in its words. Anything this cannot
    read plainly (another format, a missing file, a recipe that is not a mapping, a sweep) is left to the
    full validation and preprocessing, which explain it."""
    import csv

    from mmcli.recipe.loader import read_recipe_dict
    from mmcli.recipe.overrides import apply_overrides

    try:
        recipe = apply_overrides(read_recipe_dict(name_or_path), overrides or [])
    except (RecipeError, ValueError, TypeError, KeyError):
        return
    data = _section(recipe, "data")
    manifest = data.get("manifest")
    if "sweep" in recipe or not isinstance(manifest, str) or Path(manifest).suffix.lower() not in (".csv", ".tsv"):
        return
    try:
        with Path(manifest).open(encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle, delimiter="\t" if manifest.lower().endswith(".tsv") else ","))
    except (OSError, UnicodeDecodeError, csv.Error, StopIteration):
        return
    needed = {cfg["column"]: f"{section}.{name}.column" for section in ("inputs", "tasks")
              for name, cfg in _section(recipe, section).items() if isinstance(cfg, dict) and isinstance(cfg.get("column"), str)}
    if isinstance(data.get("id_column"), str):
        needed[data["id_column"]] = "data.id_column"
    missing = {column: key for column, key in needed.items() if column not in header}
    if missing:
        from mmcli.data.columns import missing_columns_error

        raise missing_columns_error(missing, header, manifest)


def read_table(path: Path) -> dict[str, list[Any]]:
    """The manifest as column -> cells, read with the standard library (pandas alone takes a second to
    import); a file it cannot read plainly goes through :func:`mmcli.data.manifest.read_manifest`, whose
    errors say where the problem is."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            import csv

            with path.open(encoding="utf-8-sig", newline="") as handle:
                rows = list(csv.reader(handle, delimiter="\t" if suffix == ".tsv" else ","))
            header, body = rows[0], [row for row in rows[1:] if row]
            if body and all(len(row) == len(header) for row in body) and len(set(header)) == len(header):
                return {column: [row[i] if row[i] != "" else None for row in body] for i, column in enumerate(header)}
        elif suffix in (".jsonl", ".json"):
            import json

            with path.open(encoding="utf-8") as handle:
                records = [json.loads(line) for line in handle if line.strip()]
            if records and all(isinstance(record, dict) for record in records):
                columns = list(dict.fromkeys(str(key) for record in records for key in record))
                return {column: [record.get(column) for record in records] for column in columns}
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass  # read_manifest names the line, the byte or the reason
    from mmcli.data.manifest import read_manifest

    table = read_manifest(path)
    return {str(column): table[column].tolist() for column in table.columns}


def _section(recipe: dict[str, Any], key: str) -> dict[str, Any]:
    value = recipe.get(key)
    return value if isinstance(value, dict) else {}


def named_columns(recipe: dict[str, Any]) -> dict[str, str]:
    """Manifest column -> the recipe key naming it: inputs' and tasks' ``column``, and any ``*_column`` or
    ``report_by`` of a task or objective (group ids, categories), plus ``data.id_column``."""
    found: dict[str, str] = {}
    for section in ("inputs", "tasks", "objectives"):
        for name, cfg in _section(recipe, section).items():
            if not isinstance(cfg, dict):
                continue
            for key, value in cfg.items():
                if isinstance(value, str) and (key == "column" or key.endswith("_column") or key == "report_by"):
                    found.setdefault(value, f"{section}.{name}.{key}")
    id_column = _section(recipe, "data").get("id_column")
    if isinstance(id_column, str):
        found.setdefault(id_column, "data.id_column")
    return found


def _split_problems(table: dict[str, list[Any]], data: dict[str, Any]) -> list[str]:
    problems = []
    split_column = data.get("split_column", "split")
    train = data.get("train_split", "train")
    if isinstance(split_column, str) and split_column in table:
        values = {str(value).strip() for value in table[split_column] if value is not None}
        if train not in values:
            problems.append(f"no row of split '{train}' in column '{split_column}' (values: "
                            f"{', '.join(sorted(values)[:10])}; set data.train_split)")
    id_column = data.get("id_column")
    if isinstance(id_column, str) and id_column in table:
        seen: set[str] = set()
        for value in map(str, table[id_column]):
            if value in seen:
                problems.append(f"duplicate id '{value}' in column '{id_column}' (data.id_column)")
                break
            seen.add(value)
    return problems


def _input_problems(table: dict[str, list[Any]], name: str, cfg: dict[str, Any], base_dir: Path,
                    sample: int) -> tuple[list[str], int]:
    """Empty cells of a required input; media files missing among ``sample`` evenly spread rows."""
    from mmcli.cells import is_missing

    column, modality = cfg["column"], cfg.get("modality")
    cells = table[column]
    empty = [row for row, value in enumerate(cells) if is_missing(value)]
    problems = []
    if empty and not cfg.get("optional", False):
        problems.append(f"inputs.{name}: {len(empty)} empty cell{'s' if len(empty) > 1 else ''} in column "
                        f"'{column}' (e.g. row {empty[0]}; optional: true makes them a missing {modality or 'input'})")
    if modality not in MEDIA:
        return problems, 0
    from mmcli.data.processors.base import MediaError, media_path

    skipped = set(empty)
    filled = [row for row in range(len(cells)) if row not in skipped]
    rows = filled if len(filled) <= sample else [filled[i * len(filled) // sample] for i in range(sample)]
    bad = []
    for row in rows:
        try:
            media_path(cells[row], base_dir, modality)
        except MediaError as error:
            bad.append(f"row {row}: {error}")
    if bad:
        problems.append(f"inputs.{name}: {len(bad)} of {len(rows)} sampled {modality} files cannot be used "
                        f"(e.g. {bad[0]}; paths are relative to {base_dir})")
    return problems, len(rows)
