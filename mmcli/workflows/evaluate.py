"""evaluate: per-task metrics of a trained run on any split, through the bundled metric modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcli.errors import DataError
from mmcli.run_lock import run_lock
from mmcli.runs import METRICS_FILE, atomic_write_json, atomic_write_jsonl, read_json


def external_split_name(manifest: str | Path) -> str:
    """``external-NAME`` for results on another manifest: NAME is the file's stem, or its folder's
    name for the usual ``.../NAME/manifest.csv`` (filesystem-safe: it names the robustness files)."""
    path = Path(manifest)
    name = path.parent.name if path.stem == "manifest" and path.parent.name else path.stem
    return "external-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def evaluate_run(run_dir: str | Path, split: str = "test", num_proc: int = 1, quiet: bool = True,
                 robustness: bool = False, reference: str | Path | None = None,
                 manifest: str | Path | None = None, retrieval: bool = False, zero_shot: str | None = None,
                 prompt: str = "a {}", classes: list[str] | None = None, plots: bool = False) -> dict[str, Any]:
    """Metrics on ``split``; with ``robustness``, also each input missing and under noise levels 0..1
    (JSON + PNG in the run directory). ``reference``: a run directory whose robustness report on the
    same split is the baseline curve for effective robustness. ``manifest``: evaluate every row of
    another labelled manifest instead (an external test set, decoded with the run's processors);
    its results are stored under ``external-NAME`` (see ``external_split_name``). ``retrieval``: also each
    retrieval objective's recall@K, median rank and MRR both ways; ``zero_shot``: also classify the rows
    by text prompts (``prompt`` with ``{}`` for the class name) against this manifest column's labels."""
    from mmcli.workflows.run_dir import existing_run_dir

    with run_lock(existing_run_dir(run_dir), "evaluate"):  # before opening it: a run being trained is refused as in use
        return _evaluate(run_dir, split, num_proc, quiet, robustness, reference, manifest,
                         {"retrieval": retrieval, "zero_shot": zero_shot, "prompt": prompt, "classes": classes,
                          "plots": plots})


def _evaluate(run_dir: str | Path, split: str, num_proc: int, quiet: bool, robustness: bool,
              reference: str | Path | None, manifest: str | Path | None, extra: dict[str, Any]) -> dict[str, Any]:
    from mmcli.evaluation.scoring import evaluate_splits
    from mmcli.workflows.run_dir import manifest_rows, open_run, split_dataset

    run = open_run(run_dir)
    if manifest is not None:
        split = external_split_name(manifest)
        rows = manifest_rows(run, manifest, split, num_proc, quiet, with_targets=True)
        dataset, skipped = rows.dataset, rows.records
        errors_file = atomic_write_jsonl(run.run_dir / f"errors-{split}.jsonl", skipped) if skipped else None
        if len(dataset) == 0:
            raise DataError(f"{manifest}: no row could be decoded ({len(skipped)} skipped)", hint=f"see {errors_file}")
    else:
        dataset = split_dataset(run, split, num_proc, quiet)
    # confusion matrices only when asked: drawing them costs more than the evaluation itself
    metrics = evaluate_splits(run.model, run.recipe, {split: dataset}, [split],
                              plots=run.run_dir / "plots" if extra["plots"] else None)
    result: dict[str, Any] = {"run_dir": str(run.run_dir), "split": split, "metrics": metrics[split]}
    if manifest is not None:
        result |= {"manifest": str(manifest), "skipped": len(skipped)}
        if errors_file is not None:
            result["errors_file"] = str(errors_file)
    if extra["retrieval"] or extra["zero_shot"]:
        metrics[split].update(_embedding_scores(run, dataset, extra))
        result["metrics"] = metrics[split]
    report = _robustness(run, dataset, split, reference, not quiet) if robustness else None
    path = run.run_dir / METRICS_FILE
    stored = read_json(path) if path.is_file() else {}
    stored[split] = metrics[split]
    atomic_write_json(path, stored)
    if report is not None:
        from mmcli.evaluation.robustness import plot_robustness

        result["robustness"] = report
        result["robustness_file"] = str(atomic_write_json(run.run_dir / f"robustness-{split}.json", report))
        result["robustness_plot"] = str(plot_robustness(report, run.run_dir / "plots" / f"robustness-{split}.png"))
    return result


def _embedding_scores(run: Any, dataset: Any, extra: dict[str, Any]) -> dict[str, Any]:
    from mmcli.data.loader import split_tensors
    from mmcli.workflows.retrieval import retrieval_scores, zero_shot_scores

    scores: dict[str, Any] = {}
    if extra["retrieval"]:
        scores["retrieval"] = retrieval_scores(run, split_tensors(dataset, list(run.recipe.inputs), list(run.recipe.tasks)))
    if extra["zero_shot"]:
        scores["zero_shot"] = zero_shot_scores(run, dataset, extra["zero_shot"], extra["prompt"], classes=extra["classes"])
    return scores


def _robustness(run: Any, dataset: Any, split: str, reference: str | Path | None, show_progress: bool) -> dict[str, Any]:
    from mmcli.data.loader import split_tensors
    from mmcli.evaluation.robustness import passes, robustness_report
    from mmcli.progress import task_progress

    baseline = None
    if reference is not None:
        baseline_file = Path(reference) / f"robustness-{split}.json"
        if not baseline_file.is_file():
            raise DataError(f"--reference: {baseline_file} not found", hint=f"run 'mmcli evaluate {reference} --split {split} --robustness' first")
        baseline = read_json(baseline_file)
    tensors = split_tensors(dataset, list(run.recipe.inputs), list(run.recipe.tasks))
    with task_progress("robustness", passes(run.recipe), enabled=show_progress) as advance:
        return robustness_report(run.model, run.recipe, run.preprocessing, tensors, run.recipe.training.eval_batch_size,
                                 seed=run.recipe.seed, reference=baseline, advance=advance)
