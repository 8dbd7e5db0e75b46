"""encode: pooled per-input, shared-space (with ``model.shared_space``) and fused embeddings of a split, to
safetensors or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmcli.errors import DataError
from mmcli.runs import atomic_write_bytes


def encode_run(run_dir: str | Path, split: str = "test", output: str | Path | None = None,
               num_proc: int = 1, quiet: bool = True, manifest: str | Path | None = None) -> dict[str, Any]:
    """Embeddings of a split, or of every row of another ``manifest`` (no labels needed; rows that cannot
    be decoded are skipped, counted and listed in ``OUTPUT.errors.jsonl``)."""
    from mmcli.run_lock import run_lock

    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "encode", shared=True):  # never from a run being trained
        return _encode(run_dir, split, output, num_proc, quiet, manifest)


def _encode(run_dir: str | Path, split: str, output: str | Path | None, num_proc: int, quiet: bool,
            manifest: str | Path | None) -> dict[str, Any]:
    from mmcli.data.loader import split_tensors
    from mmcli.inference.predictor import run_inference
    from mmcli.runs import atomic_write_jsonl
    from mmcli.workflows.evaluate import external_split_name
    from mmcli.workflows.run_dir import manifest_rows, open_run, split_dataset

    run = open_run(run_dir)
    skipped: list[dict[str, Any]] = []
    if manifest is not None:
        split = external_split_name(manifest)
        rows = manifest_rows(run, manifest, split, num_proc, quiet)
        dataset, skipped = rows.dataset, rows.records
        if len(dataset) == 0:
            raise DataError(f"{manifest}: no row could be decoded ({len(skipped)} skipped)",
                            hint="see the errors each row got with 'mmcli preprocess'")
    else:
        dataset = split_dataset(run, split, num_proc, quiet)
    tensors = split_tensors(dataset, list(run.recipe.inputs), list(run.recipe.tasks))
    device = next(run.model.parameters()).device
    result = run_inference(run.model, tensors, run.recipe.training.eval_batch_size, device,
                           keep=("pooled", "fused", "shared"))
    embeddings = {f"input.{name}": value for name, value in result.pooled.items()}
    embeddings.update({f"shared.{name}": value for name, value in result.shared.items()})
    embeddings["fused"] = result.fused
    ids = list(dataset["__id__"])
    output = Path(output) if output else run.run_dir / f"embeddings-{split}.safetensors"
    if output.suffix == ".safetensors":
        from safetensors.torch import save

        atomic_write_bytes(output, save({k: v.contiguous() for k, v in embeddings.items()}, metadata={"ids": json.dumps(ids), "split": split}))
    elif output.suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {"id": pa.array(ids)}
        columns.update({name: pa.array(list(value.numpy())) for name, value in embeddings.items()})
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns), buffer)
        atomic_write_bytes(output, buffer.getvalue())
    else:
        raise DataError(f"{output}: unknown embeddings format '{output.suffix}' (known: .safetensors, .parquet)")
    result = {"output": str(output), "split": split, "rows": len(ids),
              "embeddings": {name: list(value.shape) for name, value in embeddings.items()}}
    if manifest is not None:
        result |= {"manifest": str(manifest), "skipped": len(skipped)}
        if skipped:
            errors_file = output.with_name(output.stem + ".errors.jsonl")
            atomic_write_jsonl(errors_file, skipped)
            result["errors_file"] = str(errors_file)
    return result
