"""The bookkeeping columns every cached split carries beside its model-facing ones, and the one message
for a manifest that lacks a column the recipe names (said before start-up and by preprocessing alike)."""

from __future__ import annotations

from pathlib import Path

from mmcli.errors import DataError

ROW_COLUMN = "__row__"  # the row's position in the manifest
ID_COLUMN = "__id__"  # the row's id (the manifest's id column, or its position)
SPLIT_COLUMN = "__split__"


def missing_columns_error(missing: dict[str, str], columns: list[str], manifest: str | Path) -> DataError:
    """``missing`` maps each absent column to the recipe key that asks for it; ``columns``: the manifest's."""
    column, key = next(iter(missing.items()))
    return DataError(f"{manifest}: column '{column}' (from {key}) is not in the manifest"
                     + (f" (and {len(missing) - 1} more missing)" if len(missing) > 1 else ""),
                     hint=f"columns are: {', '.join(columns[:20])}")
