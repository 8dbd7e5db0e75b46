"""A split of the preprocess cache opened with pyarrow alone: ``datasets`` (and pandas behind it) costs
a second to import, more than a small evaluation takes. The cache is written by ``datasets``
(``save_to_disk``); this reads its documented layout (``dataset_dict.json``, each split's ``state.json``
naming its Arrow stream files) and gives what the readers of a split use: ``len()``, ``column_names``,
a whole column as a list (``split["__id__"]``) and the memory-mapped table (``split.data.table``) that
:class:`mmcli.data.split_rows.SplitRows` reads batches from."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa


class CachedSplit:
    _indices = None  # a whole split, never a selected view

    def __init__(self, table: pa.Table) -> None:
        self.data = SimpleNamespace(table=table)

    def __len__(self) -> int:
        return self.data.table.num_rows

    @property
    def column_names(self) -> list[str]:
        return list(self.data.table.column_names)

    def __getitem__(self, column: str) -> list[Any]:
        return self.data.table.column(column).to_pylist()


def cached_split_names(dataset_dir: Path) -> list[str]:
    return list(json.loads((dataset_dir / "dataset_dict.json").read_text())["splits"])


def open_cached_split(dataset_dir: Path, split: str) -> CachedSplit:
    folder = dataset_dir / split
    state = json.loads((folder / "state.json").read_text())
    tables = [pa.ipc.open_stream(pa.memory_map(str(folder / entry["filename"]))).read_all()
              for entry in state["_data_files"]]
    return CachedSplit(pa.concat_tables(tables) if len(tables) > 1 else tables[0])
