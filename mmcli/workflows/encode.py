"""encode: embeddings of a split or another manifest (pooled per input, shared-space, fused, and each
retrieval objective's space), or a gallery of arbitrary texts; to safetensors or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmcli.errors import DataError
from mmcli.runs import atomic_write_bytes


def encode_run(run_dir: str | Path, split: str = "test", output: str | Path | None = None,
               num_proc: int = 1, quiet: bool = True, manifest: str | Path | None = None,
               texts: str | Path | None = None, input_name: str | None = None) -> dict[str, Any]:
    """Embeddings of a split, or of every row of another ``manifest`` (no labels needed; a row may hold only
    some inputs; rows that cannot be decoded are skipped, counted and listed in ``OUTPUT.errors.jsonl``);
    with ``texts`` (a file, one text per line), a gallery of those texts through the text tower of the
    run's retrieval objective (``input_name`` picks the text input)."""
    from mmcli.run_lock import run_lock

    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "encode", shared=True):  # never from a run being trained
        if texts is not None:
            return _encode_texts(run_dir, Path(texts), output, input_name)
        return _encode(run_dir, split, output, num_proc, quiet, manifest)


def _encode_texts(run_dir: str | Path, texts: Path, output: str | Path | None, input_name: str | None) -> dict[str, Any]:
    from mmcli.workflows.retrieval import text_gallery
    from mmcli.workflows.run_dir import open_run

    if not texts.is_file():
        raise DataError(f"--texts: {texts}: no such file", hint="one text per line")
    try:
        lines = texts.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"--texts: {texts}: not UTF-8 text ({error.reason})") from None
    run = open_run(run_dir)
    gallery = text_gallery(run, lines, input_name)
    output = Path(output) if output else run.run_dir / f"gallery-{texts.stem}.safetensors"
    if output.suffix != ".safetensors":
        raise DataError(f"{output}: a gallery is written as .safetensors")
    gallery.save(output, run.run_dir)
    return {"output": str(output), "split": None, "rows": len(gallery), "gallery": True, "input": gallery.input,
            "objective": gallery.objective, "embeddings": {"embeddings": list(gallery.embeddings.shape)}}


def _encode(run_dir: str | Path, split: str, output: str | Path | None, num_proc: int, quiet: bool,
            manifest: str | Path | None) -> dict[str, Any]:
    from mmcli.data.loader import split_tensors
    from mmcli.inference.embeddings import embed_tensors, retrieval_objectives
    from mmcli.inference.predictor import run_inference
    from mmcli.runs import atomic_write_jsonl
    from mmcli.workflows.evaluate import external_split_name
    from mmcli.workflows.retrieval import manifest_values
    from mmcli.workflows.run_dir import manifest_rows, open_run, split_dataset

    run = open_run(run_dir)
    skipped: list[dict[str, Any]] = []
    if manifest is not None:
        split = external_split_name(manifest)
        rows = manifest_rows(run, manifest, split, num_proc, quiet, inputs_optional=True)
        dataset, skipped = rows.dataset, rows.records
        if len(dataset) == 0:
            raise DataError(f"{manifest}: no row could be decoded ({len(skipped)} skipped)",
                            hint="see the errors each row got with 'mmcli preprocess'")
    else:
        dataset = split_dataset(run, split, num_proc, quiet)
    tensors = split_tensors(dataset, list(run.recipe.inputs), list(run.recipe.tasks))
    device = next(run.model.parameters()).device
    batch = run.recipe.training.eval_batch_size
    # a model none of whose objectives reads the fusion has none (model.py): no untrained "fused" vector is written
    fused = run.model.backbone.fusion is not None
    result = run_inference(run.model, tensors, batch, device, keep=("pooled", "shared", *(("fused",) if fused else ())))
    embeddings = {f"input.{name}": value for name, value in result.pooled.items()}
    embeddings.update({f"shared.{name}": value for name, value in result.shared.items()})
    if fused:
        embeddings["fused"] = result.fused
    for name, objective in retrieval_objectives(run.model).items():
        for input_name in objective.pair:
            if input_name in run.recipe.inputs:
                vectors, present = embed_tensors(run.model, objective, input_name, tensors, batch, device)
                embeddings[f"retrieval.{name}.{input_name}"] = vectors
                embeddings[f"present.{input_name}"] = present
    ids = list(dataset["__id__"])
    table_rows = list(dataset["__row__"])
    if manifest is None:
        sources = {name: manifest_values(run, cfg.column, table_rows) for name, cfg in run.recipe.inputs.items()}
    else:
        sources = {}
    output = Path(output) if output else run.run_dir / f"embeddings-{split}.safetensors"
    if output.suffix == ".safetensors":
        from safetensors.torch import save

        metadata = {"ids": json.dumps(ids), "split": split, "sources": json.dumps(sources)}
        atomic_write_bytes(output, save({k: v.contiguous() for k, v in embeddings.items()}, metadata=metadata))
    elif output.suffix == ".parquet":
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = {"id": pa.array(ids)}
        columns.update({f"source.{name}": pa.array(values) for name, values in sources.items()})
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
