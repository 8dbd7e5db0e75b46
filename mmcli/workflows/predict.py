"""predict: decode new rows with the run's processors and answer every task (labels with probabilities,
values, generated texts, label sets); JSON for scripts, a file only where asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


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

    def predict(self, rows: list[dict[str, Any]], base_dir: str | Path = ".", prompt: str | None = None,
                on_text: Callable[[str], None] | None = None, **decoding: Any) -> list[dict[str, Any]]:
        """One answer per row, in order: ``{task: answer, ...}``, or ``{"error": reason}`` for a row whose
        media cannot be read. ``prompt``: what a language-model task is asked (default: its recipe prompt);
        ``on_text``: told the first such task's answer piece by piece as it is generated (one row, no
        beam search); ``decoding``: search settings for the text tasks (num_beams, ...)."""
        from mmcli.data.in_memory import decode_in_memory
        from mmcli.workflows.run_dir import rows_table

        recipe, table = rows_table(self.run.recipe, rows)
        for name in self.prompted_tasks():
            table[recipe.tasks[name].column] = [prompt_cell(prompt)] * len(table)
        # a few rows go straight to tensors: no Arrow file, no datasets machinery (what serve answers with)
        decoded = decode_in_memory(recipe, table, Path(base_dir), self.run.preprocessing)
        answers = dict(zip(decoded.kept, self.answer_tensors(decoded.tensors, decoding, on_text)))
        return [answers.get(i, {"error": decoded.errors.get(i, "not decoded")}) for i in range(len(rows))]

    def answer(self, dataset: Any, decoding: dict[str, Any] | None = None,
               on_text: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """Answers for decoded rows (a dataset made with this run's processors)."""
        from mmcli.data.loader import split_tensors

        recipe = self.run.recipe
        tensors = split_tensors(dataset, list(recipe.inputs), [t for t in recipe.tasks if t in dataset.column_names])
        return self.answer_tensors(tensors, decoding, on_text)

    def answer_tensors(self, tensors: Any, decoding: dict[str, Any] | None = None,
                       on_text: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """Answers for rows in the batch format (decoded with this run's processors)."""
        from mmcli.inference.predictor import run_inference

        recipe, model = self.run.recipe, self.run.model
        rows = len(tensors["__row__"])
        settings = self.decoding(decoding or {})
        streamed = self.prompted_tasks()[:1] if on_text is not None and rows == 1 else []
        for name in streamed:
            if settings.get(name, {}).get("num_beams", model.tasks[name].generation.num_beams) == 1:
                from mmcli.inference.streaming import text_streamer

                settings[name] = {**settings.get(name, {}), "streamer": text_streamer(model.tasks[name].codec.tokenizer,
                                                                                      on_text)}
        inference = run_inference(model, tensors, recipe.training.eval_batch_size, next(model.parameters()).device,
                                  decoding=settings)
        decoded = {task: model.tasks[task].decode(value) for task, value in inference.predictions.items()}
        answers = [{task: decoded[task][i] for task in decoded} for i in range(rows)]
        for name, wrapper in model.wrappers.items():  # what a wrapper did to a row is part of its prediction
            report = inference.reports.get(name, {})
            for i, answer in enumerate(answers):
                answer.update(wrapper.row_fields(report, i))
        return answers

    def prompted_tasks(self) -> list[str]:
        """Tasks whose answer continues a prompt (a language model's conversation)."""
        return [name for name, task in self.run.model.tasks.items() if getattr(task, "codec_reads_prompts", False)]

    def decoding(self, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The search settings for each task that searches (text tasks); none given: each task's own. A
        setting no such task takes is one clear error."""
        settings = {key: value for key, value in settings.items() if value is not None}
        searching = {name: task for name, task in self.run.model.tasks.items() if task.decoding_options()}
        if settings and not searching:
            raise DataError(f"--{next(iter(settings)).replace('_', '-')}: this run has no task that generates text")
        for key in settings:
            for task in searching.values():
                if key not in task.decoding_options():
                    raise DataError(f"--{key.replace('_', '-')}: not a decoding setting of this run's text tasks")
        return {name: dict(settings) for name in searching}


def prompt_cell(prompt: str | None) -> str | None:
    """A user's prompt as a one-turn conversation (the task's own prompt when there is none)."""
    import json

    return None if prompt is None else json.dumps([{"role": "user", "content": prompt}])


def predict_run(run_dir: str | Path, manifest: str | Path | None = None, sample: dict[str, str] | None = None,
                output: str | Path | None = None, num_proc: int = 1, quiet: bool = True,
                decoding: dict[str, Any] | None = None, prompt: str | None = None,
                on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Predictions for a manifest or one sample, returned (every row); written as JSONL only to ``output``
    (rows that cannot be read are skipped, counted, and listed beside it). Refused with one line while the
    run is being trained (a reader's shared lock): a half-trained checkpoint never answers."""
    from mmcli.run_lock import run_lock
    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "predict", shared=True):
        return _predict(run_dir, manifest, sample, output, num_proc, quiet, decoding or {}, prompt, on_text)


def _predict(run_dir: str | Path, manifest: str | Path | None, sample: dict[str, str] | None,
             output: str | Path | None, num_proc: int, quiet: bool, decoding: dict[str, Any],
             prompt: str | None = None, on_text: Callable[[str], None] | None = None) -> dict[str, Any]:
    from mmcli.workflows.run_dir import manifest_rows

    if manifest is None and not sample and prompt is None:
        raise DataError("nothing to predict", hint="pass --manifest FILE or at least one of --text/--image/--audio/--video")
    predictor = Predictor(run_dir)
    run = predictor.run
    if prompt is not None and not predictor.prompted_tasks():
        raise DataError("--prompt: this run has no task that answers a prompt (a language-model decoder)")
    if sample or prompt is not None:
        # media paths are absolute (sample_by_modality)
        rows = predictor.predict([sample or {}], base_dir="/", prompt=prompt, on_text=on_text, **decoding)
        if "error" in rows[0]:
            raise DataError(f"the given sample: {rows[0]['error']}")
        rows = [{"id": "0", "row": 0, **rows[0]}]
        records: list[dict] = []
        total = 1
    else:
        rows_in = manifest_rows(run, manifest, PREDICT_SPLIT, num_proc, quiet)
        answers = predictor.answer(rows_in.dataset, decoding)
        rows = [{"id": rows_in.ids[row], "row": int(row), **answer} for row, answer in zip(rows_in.kept, answers)]
        records, total = rows_in.records, len(rows_in.ids)
    result: dict[str, Any] = {"rows": total, "predicted": len(rows), "skipped": len(records), "output": None,
                              "streamed": predictor.prompted_tasks()[:1] if on_text is not None and manifest is None
                              else [],
                              "tasks": list(run.model.tasks),
                              "predictions": rows}
    if output is not None:
        output = Path(output)
        result["output"] = str(atomic_write_jsonl(output, rows))
        if records:
            result["errors_file"] = str(atomic_write_jsonl(output.with_name(output.stem + ".errors.jsonl"), records))
    if records:
        result["errors"] = records[:20]
    return result


def sample_by_modality(run_dir: str | Path, given: dict[str, str]) -> dict[str, str]:
    """Map --image/--audio/... to the run's input of that modality (input name -> value); media paths
    are made absolute, as typed from wherever the user is."""
    from mmcli.workflows.run_dir import require_run_dir, run_recipe

    recipe = run_recipe(require_run_dir(run_dir))
    sample = {}
    for modality, value in given.items():
        names = [name for name, cfg in recipe.inputs.items() if cfg.modality == modality]
        if not names:
            raise DataError(f"--{modality}: this run has no {modality} input (inputs: {', '.join(recipe.inputs)})")
        if len(names) > 1:
            raise DataError(f"--{modality}: the run has several {modality} inputs ({', '.join(names)})", hint="use --manifest")
        sample[names[0]] = value if modality == "text" else str(Path(value).resolve())
    return sample
