"""Read a manifest (CSV, JSONL or Parquet) and decide each row's split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmcli.data.columns import missing_columns_error
from mmcli.errors import DataError

READERS = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def read_manifest(path: str | Path) -> pd.DataFrame:
    """One row per sample; every cell kept as read (strings stay strings, empty cells are None)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found", hint="check data.manifest or make one with 'mmcli datasets make'")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unknown manifest format '{path.suffix}' (known: .csv, .tsv, .jsonl, .parquet)")
    try:
        if kind == "csv":
            table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                                keep_default_na=False, na_values=[""], encoding="utf-8")
        elif kind == "jsonl":
            table = pd.read_json(path, lines=True, dtype=False)
        else:
            table = pd.read_parquet(path)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text: {_bad_utf8(path, error)}", hint="save the manifest as UTF-8") from error
    except (ValueError, pd.errors.ParserError, OSError) as error:
        where = _bad_json_line(path) if kind == "jsonl" else None
        if where is not None:
            raise DataError(f"{path}: {where}", hint="each line must be one JSON object") from error
        raise DataError(f"{path}: cannot read the {kind} manifest: {' '.join(str(error).split())[:200]}") from error
    if kind == "csv" and not isinstance(table.index, pd.RangeIndex):
        # pandas silently makes the leading cells an index when every row has more cells than the header
        raise DataError(f"{path}: rows have more fields than the header (a trailing separator?)",
                        hint="every row needs exactly one cell per column name")
    if len(table) == 0:
        raise DataError(f"{path}: the manifest has no rows")
    table.columns = [str(c) for c in table.columns]
    duplicated = table.columns[table.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: duplicate column names: {', '.join(duplicated)}")
    return table.astype(object).where(pd.notna(table), None).reset_index(drop=True)


def _bad_utf8(path: Path, error: UnicodeDecodeError) -> str:
    """Where the first byte that is not UTF-8 is, as a person finds it: line, column, byte offset
    (the reader's own offset counts from the block it was reading)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as found:
        line_start = data.rfind(b"\n", 0, found.start) + 1
        line = data.count(b"\n", 0, found.start) + 1
        return f"{found.reason} at line {line}, byte {found.start - line_start + 1} of the line (offset {found.start} in the file)"
    return f"{error.reason}"


def _bad_json_line(path: Path) -> str | None:
    """The first JSONL line that is not one JSON object, with its line number and row."""
    import json

    row = 0
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.strip())
            except ValueError as error:
                return f"line {number} (row {row}) is not valid JSON: {error.msg} (column {error.colno})"
            if not isinstance(value, dict):
                return f"line {number} (row {row}) is a JSON {type(value).__name__}, not an object"
            row += 1
    return None


def require_columns(table: pd.DataFrame, needed: dict[str, str], manifest: Path) -> None:
    """``needed`` maps a column to the recipe key that asks for it."""
    missing = {column: key for column, key in needed.items() if column not in table.columns}
    if missing:
        raise missing_columns_error(missing, list(table.columns), manifest)


def assign_splits(table: pd.DataFrame, split_column: str, ratios: dict[str, float], seed: int) -> np.ndarray:
    """The manifest's split column if present, else a seeded random split by ``ratios``."""
    if split_column in table.columns:
        splits = table[split_column]
        empty = splits.isna() | (splits.astype(str).str.strip() == "")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise DataError(f"manifest row {row}: empty '{split_column}' cell ({int(empty.sum())} rows in all)",
                            hint="give every row a split, or drop the column to split by data.split_ratios")
        return splits.astype(str).str.strip().to_numpy()
    order = np.random.default_rng(seed).permutation(len(table))
    names = list(ratios)
    bounds = np.round(np.cumsum([ratios[name] for name in names]) * len(table)).astype(int)
    result = np.empty(len(table), dtype=object)
    start = 0
    for name, end in zip(names, bounds):
        result[order[start:end]] = name
        start = end
    return result


def row_ids(table: pd.DataFrame, id_column: str | None, manifest: Path) -> list[str]:
    if id_column is None:
        return [str(i) for i in range(len(table))]
    ids = table[id_column].astype(str)
    duplicates = ids[ids.duplicated()]
    if len(duplicates):
        raise DataError(f"{manifest}: duplicate id '{duplicates.iloc[0]}' in column '{id_column}' ({len(duplicates)} duplicates)",
                        hint="ids must be unique")
    return ids.tolist()
