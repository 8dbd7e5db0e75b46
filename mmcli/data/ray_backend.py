"""Decoding on Ray Data (``preprocess --backend ray``): the same row decoder mmcli runs locally, mapped over
chunks of rows by a Ray cluster (``--ray-address``, or a local Ray started for the call), in order, so the
cache written is the one the local backend writes: the same tensors under the same cache key. Media paths
must be readable where the workers run (a shared file system)."""

from __future__ import annotations

import pickle
from typing import Any, Iterator

from mmcli.errors import DataError


def ray_chunks(decoder: Any, chunks: list[list[dict[str, Any]]], address: str | None,
               num_proc: int) -> Iterator[dict[str, list]]:
    """Each chunk's decoded columns, in chunk order."""
    try:
        import ray
    except ImportError:
        raise DataError("--backend ray needs Ray Data", hint="pip install 'mmcli[ray]'") from None
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, num_cpus=None if address else max(num_proc, 1), include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise DataError(f"--ray-address {address}: cannot join the Ray cluster ({' '.join(str(error).split())[:160]})",
                            hint="start one with 'ray start --head', or leave --ray-address out for a local Ray") from None
        started = True
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the cache keeps manifest order
        context.enable_progress_bars = False
        payloads = ray.data.from_items([{"chunk": pickle.dumps(chunk)} for chunk in chunks], override_num_blocks=len(chunks))

        def decode(item: dict[str, Any]) -> dict[str, Any]:
            return {"decoded": pickle.dumps(decoder.chunk(pickle.loads(item["chunk"])))}

        for item in payloads.map(decode).iter_rows():
            yield pickle.loads(item["decoded"])
    finally:
        if started:
            ray.shutdown()
