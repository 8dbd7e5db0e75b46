"""Decode every row's media once, in worker processes, into an Arrow file (with a rich progress bar).

Rows are decoded in chunks; each chunk's columns are appended to one Arrow file through
``datasets``' ArrowWriter and the result is opened memory-mapped, so memory stays bounded by
a chunk whatever the dataset size.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

CHUNK_ROWS = 128
ERROR_COLUMN = "__error__"


def present_column(name: str) -> str:
    return f"{name}__present"


class RowDecoder:
    """Decodes manifest cells into the processors' columns; bad media become an error message."""

    def __init__(self, processors: dict, columns: dict[str, str], optional: set[str], base_dir: Path) -> None:
        self.processors, self.columns, self.optional, self.base_dir = processors, columns, optional, base_dir

    def row(self, cells: dict[str, Any]) -> dict[str, Any]:
        from mmcli.data.processors.base import MediaError

        out: dict[str, Any] = {}
        errors = []
        for name, processor in self.processors.items():
            value = cells[self.columns[name]]
            is_empty = value is None or (isinstance(value, str) and not value.strip())
            if is_empty and name in self.optional:
                out.update(processor.missing())
                out[present_column(name)] = False
                continue
            try:
                out.update(processor.decode(value, self.base_dir))
                out[present_column(name)] = True
            except MediaError as error:
                errors.append(f"{name}: {error}")
                out.update(processor.missing())
                out[present_column(name)] = False
        out[ERROR_COLUMN] = "; ".join(errors)
        return out

    def chunk(self, rows: list[dict[str, Any]]) -> dict[str, list]:
        decoded = [self.row(cells) for cells in rows]
        return {key: [row[key] for row in decoded] for key in decoded[0]}


_WORKER: RowDecoder | None = None


def _init_worker(decoder: RowDecoder, parent: int) -> None:
    from mmcli.interrupts import worker_defaults

    global _WORKER
    _WORKER = decoder
    worker_defaults(parent)
    if "torch" in sys.modules:
        # A forked child inherits a parent's OpenMP pool state but not its threads: the first
        # parallel torch op (audio features, resizing) would wait on them forever. One thread
        # per worker, as torch's own DataLoader workers do (the workers are the parallelism).
        sys.modules["torch"].set_num_threads(1)


def _decode_in_worker(rows: list[dict[str, Any]]) -> dict[str, list]:
    assert _WORKER is not None
    return _WORKER.chunk(rows)


def _chunks(cells: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(cells), CHUNK_ROWS):
        yield cells[start:start + CHUNK_ROWS]


def decode_rows(decoder: RowDecoder, cells: list[dict[str, Any]], features: Any, extra: dict[str, list],
                workdir: Path, num_proc: int = 1, show_progress: bool = False, backend: str = "local",
                ray_address: str | None = None) -> Any:
    """Decode ``cells`` (one dict per row) and return a memory-mapped Dataset of decoded columns + ``extra``;
    locally in ``num_proc`` processes, or on Ray Data (``backend="ray"``)."""
    import pyarrow as pa
    from datasets import Dataset
    from datasets.arrow_writer import ArrowWriter

    from mmcli.progress import task_progress

    workdir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkstemp(dir=workdir, prefix="decoded-", suffix=".arrow")[1])
    writer = ArrowWriter(features=features, path=str(path))
    pool = None
    if backend == "ray":
        from mmcli.data.ray_backend import ray_chunks

        results: Iterator[Any] = ray_chunks(decoder, list(_chunks(cells)), features, ray_address, num_proc)
    elif num_proc > 1 and len(cells) > CHUNK_ROWS:
        # fork: workers inherit the fitted processors without pickling them or re-importing __main__
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        pool = context.Pool(num_proc, initializer=_init_worker, initargs=(decoder, os.getpid()))
        results = pool.imap(_decode_in_worker, _chunks(cells))
    else:
        results = (decoder.chunk(chunk) for chunk in _chunks(cells))
    try:
        with task_progress("decoding media", len(cells), enabled=show_progress) as advance:
            start = 0
            for batch in results:
                if isinstance(batch, dict):
                    size = len(batch[ERROR_COLUMN])
                    batch.update({key: values[start:start + size] for key, values in extra.items()})
                    writer.write_batch(batch)
                else:  # an Arrow table from the Ray backend
                    size = batch.num_rows
                    for key, values in extra.items():
                        batch = batch.append_column(key, pa.array(values[start:start + size], type=features[key].pa_type))
                    writer.write_table(batch.select(list(features)))
                start += size
                advance(size)
        writer.finalize()
    finally:
        writer.close()
        if pool is not None:
            pool.terminate()
    return Dataset.from_file(str(path))
