"""predict: decode new rows with the run's processors, write JSONL predictions with probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mmcli.errors import DataError
from mmcli.runs import atomic_write_jsonl

PREDICT_SPLIT = "predict"


class Predictor:
    """A trained run, loaded once, that answers rows: ``Predictor("runs/quickstart").predict([{"image":
    "a.png", "audio": "a.wav", "text": "it looks crimson"}])``. Each row names inputs (an input left out
    is missing for that row); paths are relative to ``base_dir``. Rows go through the run's own
    processors, so what the model sees is what it was trained on."""

    def __init__(self, run_dir: str | Path) -> None:
        from mmcli.workflows.run_dir import open_run

        self.run = open_run(run_dir)

    def predict(self, rows: list[dict[str, Any]], base_dir: str | Path = ".") -> list[dict[str, Any]]:
        """One answer per row, in order: ``{task: answer, ...}``, or ``{"error": reason}`` for a row whose
        media cannot be read."""
        from mmcli.workflows.run_dir import decode_rows

        recipe, table = _rows_table(self.run.recipe, rows, Path(base_dir))
        ids = [str(i) for i in range(len(table))]
        decoded = decode_rows(self.run, recipe, table, Path(base_dir), PREDICT_SPLIT, ids, "the given rows")
        answers = {int(row): answer for row, answer in zip(decoded.kept, self.answer(decoded.dataset))}
        errors = {record["row"]: record["error"] for record in decoded.records}
        return [answers.get(i, {"error": errors.get(i, "not decoded")}) for i in range(len(rows))]

    def answer(self, dataset: Any) -> list[dict[str, Any]]:
        """Answers for decoded rows (a dataset made with this run's processors)."""
        from mmcli.data.loader import split_tensors
        from mmcli.inference.predictor import run_inference

        recipe, model = self.run.recipe, self.run.model
        tensors = split_tensors(dataset, list(recipe.inputs), [t for t in recipe.tasks if t in dataset.column_names])
        inference = run_inference(model, tensors, recipe.training.eval_batch_size, next(model.parameters()).device)
        decoded = {task: model.tasks[task].decode(value) for task, value in inference.predictions.items()}
        rows = [{task: decoded[task][i] for task in decoded} for i in range(len(dataset))]
        for name, wrapper in model.wrappers.items():  # what a wrapper did to a row is part of its prediction
            report = inference.reports.get(name, {})
            for i, row in enumerate(rows):
                row.update(wrapper.row_fields(report, i))
        return rows


def _rows_table(recipe: Any, rows: list[dict[str, Any]], base_dir: Path) -> tuple[Any, pd.DataFrame]:
    """The rows as a manifest table (input name -> its column); an input some row leaves out is
    optional, so it is missing there rather than a bad row."""
    unknown = sorted({name for row in rows for name in row if name not in recipe.inputs})
    if unknown:
        raise DataError(f"this run has no input '{unknown[0]}' (inputs: {', '.join(recipe.inputs)})")
    recipe = recipe.model_copy(deep=True)
    recipe.data.on_error = "skip"  # a row that cannot be read gets its own error, the others their answers
    records: list[dict[str, Any]] = [{} for _ in rows]
    for name, cfg in recipe.inputs.items():
        if any(row.get(name) is None for row in rows):
            cfg.optional = True
        for record, row in zip(records, rows):
            record[cfg.column] = row.get(name)
    return recipe, pd.DataFrame(records, dtype=object)


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
    from mmcli.workflows.run_dir import manifest_rows

    if manifest is None and not sample:
        raise DataError("nothing to predict", hint="pass --manifest FILE or at least one of --text/--image/--audio/--video")
    predictor = Predictor(run_dir)
    run = predictor.run
    if sample:
        rows = predictor.predict([sample])
        if "error" in rows[0]:
            raise DataError(f"the given sample: {rows[0]['error']}")
        rows = [{"id": "0", "row": 0, **rows[0]}]
        records: list[dict] = []
        total = 1
    else:
        rows_in = manifest_rows(run, manifest, PREDICT_SPLIT, num_proc, quiet)
        answers = predictor.answer(rows_in.dataset)
        rows = [{"id": rows_in.ids[row], "row": int(row), **answer} for row, answer in zip(rows_in.kept, answers)]
        records, total = rows_in.records, len(rows_in.ids)
    output = Path(output) if output else run.run_dir / "predictions.jsonl"
    atomic_write_jsonl(output, rows)
    if records:
        atomic_write_jsonl(output.with_name(output.stem + ".errors.jsonl"), records)
    return {"output": str(output), "rows": total, "predicted": len(rows), "skipped": len(records),
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
