"""Decoding on Ray Data (``preprocess --backend ray``): the same row decoder mmcli runs locally, mapped over
chunks of rows by a Ray cluster (``--ray-address``, or a local Ray started for the call), in order, so the
cache written is the one the local backend writes: the same tensors under the same cache key. Media paths
must be readable where the workers run (a shared file system)."""

from __future__ import annotations

from typing import Any, Iterator

from mmcli.errors import DataError


def ray_chunks(decoder: Any, chunks: list[list[dict[str, Any]]], features: Any, address: str | None,
               num_proc: int) -> Iterator[Any]:
    """Each chunk's decoded columns as an Arrow table typed by ``features``, in chunk order.

    Results travel as Arrow IPC streams, not pickles: the driver never unpickles what a worker sent."""
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
        import pyarrow as pa

        indices = ray.data.from_items([{"index": i} for i in range(len(chunks))], override_num_blocks=len(chunks))

        def decode(item: dict[str, Any]) -> dict[str, Any]:
            return {"decoded": _arrow_bytes(decoder.chunk(chunks[item["index"]]), features)}

        for item in indices.map(decode).iter_rows():
            yield pa.ipc.open_stream(item["decoded"]).read_all()
    finally:
        if started:
            ray.shutdown()


def _arrow_bytes(batch: dict[str, list], features: Any) -> bytes:
    import pyarrow as pa
    from datasets import Features
    from datasets.arrow_writer import ArrowWriter

    sink = pa.BufferOutputStream()
    writer = ArrowWriter(features=Features({key: features[key] for key in batch}), stream=sink)
    writer.write_batch(batch)
    writer.finalize()
    return sink.getvalue().to_pybytes()
