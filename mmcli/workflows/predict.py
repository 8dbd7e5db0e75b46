"""predict: decode new rows with the run's processors, write JSONL predictions with probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mmcli.errors import DataError
from mmcli.runs import atomic_write_jsonl

PREDICT_SPLIT = "predict"


def _sample_table(recipe: Any, sample: dict[str, str]) -> tuple[Any, pd.DataFrame]:
    """One row from --text/--image/--audio/--video; an input not given counts as missing."""
    unknown = [name for name in sample if name not in recipe.inputs]
    if unknown:
        raise DataError(f"this run has no input '{unknown[0]}' (inputs: {', '.join(recipe.inputs)})")
    recipe = recipe.model_copy(deep=True)
    row: dict[str, Any] = {}
    for name, cfg in recipe.inputs.items():
        value = sample.get(name)
        if value is None:
            cfg.optional = True
        elif cfg.modality != "text":
            value = str(Path(value).resolve())
        row[cfg.column] = value
    return recipe, pd.DataFrame([row], dtype=object)


def predict_run(run_dir: str | Path, manifest: str | Path | None = None, sample: dict[str, str] | None = None,
                output: str | Path | None = None, num_proc: int = 1, quiet: bool = True) -> dict[str, Any]:
    """Predictions for a manifest or one sample (JSONL). Refused with one line while the run is being
    trained (a reader's shared lock): a half-trained checkpoint never answers."""
    from mmcli.run_lock import run_lock

    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "predict", shared=True):
        return _predict(run_dir, manifest, sample, output, num_proc, quiet)


def _predict(run_dir: str | Path, manifest: str | Path | None, sample: dict[str, str] | None,
             output: str | Path | None, num_proc: int, quiet: bool) -> dict[str, Any]:
    from mmcli.data.loader import split_tensors
    from mmcli.inference.predictor import run_inference
    from mmcli.workflows.run_dir import decode_rows, manifest_rows, open_run

    run = open_run(run_dir)
    if manifest is not None:
        rows_in = manifest_rows(run, manifest, PREDICT_SPLIT, num_proc, quiet)
    elif sample:
        recipe, table = _sample_table(run.recipe, sample)
        ids = [str(i) for i in range(len(table))]
        rows_in = decode_rows(run, recipe, table, Path("/"), PREDICT_SPLIT, ids, "the given sample", num_proc, quiet)
    else:
        raise DataError("nothing to predict", hint="pass --manifest FILE or at least one of --text/--image/--audio/--video")
    recipe, dataset, ids, kept = run.recipe, rows_in.dataset, rows_in.ids, rows_in.kept
    tensors = split_tensors(dataset, list(recipe.inputs), [t for t in recipe.tasks if t in dataset.column_names])
    device = next(run.model.parameters()).device
    inference = run_inference(run.model, tensors, recipe.training.eval_batch_size, device)
    decoded = {task: run.model.tasks[task].decode(value) for task, value in inference.predictions.items()}
    rows = [{"id": ids[row], "row": int(row), **{task: decoded[task][i] for task in decoded}} for i, row in enumerate(kept)]
    for name, wrapper in run.model.wrappers.items():  # what a wrapper did to a row is part of its prediction
        report = inference.reports.get(name, {})
        for i, row in enumerate(rows):
            row.update(wrapper.row_fields(report, i))
    output = Path(output) if output else run.run_dir / "predictions.jsonl"
    atomic_write_jsonl(output, rows)
    if rows_in.records:
        atomic_write_jsonl(output.with_name(output.stem + ".errors.jsonl"), rows_in.records)
    return {"output": str(output), "rows": len(ids), "predicted": len(rows), "skipped": len(rows_in.records),
            "predictions": rows if sample else rows[:3]}


def sample_by_modality(run_dir: str | Path, given: dict[str, str]) -> dict[str, str]:
    """Map --image/--audio/... to the run's input of that modality (input name -> value)."""
    from mmcli.workflows.run_dir import require_run_dir, run_recipe

    recipe = run_recipe(require_run_dir(run_dir))
    sample = {}
    for modality, value in given.items():
        names = [name for name, cfg in recipe.inputs.items() if cfg.modality == modality]
        if not names:
            raise DataError(f"--{modality}: this run has no {modality} input (inputs: {', '.join(recipe.inputs)})")
        if len(names) > 1:
            raise DataError(f"--{modality}: the run has several {modality} inputs ({', '.join(names)})", hint="use --manifest")
        sample[names[0]] = value
    return sample
