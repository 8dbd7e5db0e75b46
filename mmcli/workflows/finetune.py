"""finetune: preprocess (or reuse the cache), train, evaluate, write the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mmcli.errors import MmcliError
from mmcli.recipe.loader import recipe_to_yaml, validate_recipe
from mmcli.run_lock import run_lock
from mmcli.runs import (CHECKPOINTS, ENV_FILE, METRICS_FILE, PREPROCESSING_FILE, RECIPE_FILE, RUN_LOG, append_line,
                        atomic_write_json, environment_record, write_recipe)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory (CPU); on a GPU, the peak allocated device memory is added."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return None
    import torch

    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return round(peak, 1)


def log(run_dir: Path, text: str) -> None:
    """A line of ``run.log`` (what the console showed, kept with the run)."""
    import time

    append_line(run_dir / RUN_LOG, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}")


def run_directory(recipe: Any, run_dir: str | Path | None = None) -> Path:
    """``--run-dir``, or OUTPUT_DIR/NAME (a name is one path component: it never leaves OUTPUT_DIR)."""
    if run_dir:
        return Path(run_dir)
    output = Path(recipe.output_dir)
    path = output / recipe.name
    if path.resolve().parent != output.resolve():
        raise MmcliError(f"name: '{recipe.name}' must name a folder inside output_dir ({output})")
    return path


def finetune(recipe: Any, run_dir: str | Path | None = None, num_proc: int = 1, show_progress: bool = True,
             argv: list[str] | None = None, resume: bool = False, callbacks: list[Any] | None = None,
             overwrite: bool = False) -> dict[str, Any]:
    """Train and evaluate; with ``resume``, continue the run directory's newest checkpoint; a run
    directory that holds a run is refused unless ``overwrite``, and then replaced only once the new run
    has finished (:mod:`mmcli.run_slot`).

    Under a launcher (``torchrun --nproc_per_node N -m mmcli finetune ...``) every process trains on
    its share of each batch; only the main process takes the run lock, writes the run directory and
    evaluates, and the others return ``{"run_dir", "process"}``. ``callbacks``: training callbacks added to
    the recipe's own (:mod:`mmcli.training.callbacks`)."""
    from mmcli.run_slot import choose_target, land
    from mmcli.training.distributed import broadcast_value, process_state
    from mmcli.workflows.run_dir import resolved_paths

    recipe = resolved_paths(recipe)  # the run records absolute paths: it evaluates from any folder
    run_dir = run_directory(recipe, run_dir)
    processes = process_state(recipe)
    if not processes.is_main_process:
        target = Path(broadcast_value(None, processes))
        return _finetune(recipe, target, num_proc, show_progress, argv, resume, processes, callbacks)
    with run_lock(run_dir, "finetune"):
        target = choose_target(run_dir, resume, overwrite)
        broadcast_value(str(target), processes)
        restarted = _nothing_to_resume(recipe, target) if resume else None
        result = _finetune(recipe, target, num_proc, show_progress, argv, resume, processes, callbacks)
        land(target, run_dir)
    if restarted:
        result["warnings"] = [restarted, *result.get("warnings", [])]
    return {**result, "run_dir": str(run_dir)}


def _nothing_to_resume(recipe: Any, run_dir: Path) -> str | None:
    """A run stopped before its first checkpoint trains again from the start: said at once and in the result."""
    import warnings

    from mmcli.errors import MmcliWarning
    from mmcli.training.checkpoints import list_checkpoints

    if list_checkpoints(run_dir / CHECKPOINTS):
        return None
    _check_same_recipe(recipe, run_dir)  # a changed recipe is refused before anything else is said
    note = f"--resume: {run_dir} has no checkpoint yet (it stopped before its first save): training from the start"
    warnings.warn(note, MmcliWarning, stacklevel=3)
    return note


def _whole_best_model(recipe: Any, preprocessing: dict, run_dir: Path, device: Any) -> Any:
    """The best checkpoint in a model of this process alone (after FSDP training) on ``device``."""
    from mmcli.model import build_model
    from mmcli.runs import BEST_CHECKPOINT
    from mmcli.training.checkpoints import load_weights

    model = build_model(recipe, preprocessing)
    load_weights(run_dir / BEST_CHECKPOINT, model)
    return model.to(device)


def _check_same_recipe(recipe: Any, run_dir: Path) -> None:
    import yaml

    saved_path = run_dir / RECIPE_FILE
    if not saved_path.is_file():
        return
    from mmcli.run_slot import recipe_differences
    from mmcli.workflows.run_dir import resolved_paths

    # validated again, so defaults added by a newer mmcli compare equal on both sides; paths resolved as
    # runs record them (a run written before that kept them relative)
    saved = resolved_paths(validate_recipe(yaml.safe_load(saved_path.read_text(encoding="utf-8")))).model_dump(mode="json")
    current = recipe.model_dump(mode="json")
    sections = [key for key in current if saved.get(key) != current[key]]
    if sections:
        differences = recipe_differences({key: saved.get(key) for key in sections}, {key: current[key] for key in sections})
        shown = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
        named = " and ".join(f"'{key}'" for key in sections)
        raise MmcliError(f"--resume: the recipe's {named} section{'s differ' if len(sections) > 1 else ' differs'} from "
                         f"{saved_path}: {shown}", hint="resume with the same recipe and overrides, or start a new run")


def _finetune(recipe: Any, run_dir: Path, num_proc: int, show_progress: bool, argv: list[str] | None,
              resume: bool, processes: Any, callbacks: list[Any] | None) -> dict[str, Any]:
    from mmcli.data.preprocess import preprocess
    from mmcli.evaluation.scoring import evaluate_splits
    from mmcli.model import build_model
    from mmcli.training.initialisation import initialise_from
    from mmcli.training.seeding import seed_everything
    from mmcli.training.trainer import train

    main = processes.is_main_process
    if resume:
        _check_same_recipe(recipe, run_dir)
    with processes.main_process_first():  # one process writes the cache, the others then read it
        prepared = preprocess(recipe, num_proc=num_proc, quiet=not (show_progress and main))
    if main:  # only once the data is read: a run that cannot start writes nothing
        write_recipe(run_dir, recipe_to_yaml(recipe))  # with its hash: a later edit is noticed when the run is opened
        atomic_write_json(run_dir / ENV_FILE, environment_record(recipe.seed, argv))
        atomic_write_json(run_dir / PREPROCESSING_FILE, prepared.preprocessing)
        atomic_write_json(run_dir / "data.json", {**prepared.summary(), "cache": str(prepared.cache_dir.resolve())})
        shutil.copyfile(prepared.errors_file, run_dir / "errors.jsonl")
        summary = prepared.summary()
        log(run_dir, f"preprocess: {summary['rows']} rows, kept {summary['kept']}, skipped {summary['skipped']} "
                     f"({', '.join(f'{k} {v}' for k, v in summary['splits'].items())}); "
                     f"{'reused' if summary['reused_cache'] else 'wrote'} the cache {summary['cache']}")
    datasets = prepared.load()

    seed_everything(recipe.seed)
    model = build_model(recipe, prepared.preprocessing)
    initialised = initialise_from(model, recipe.init, prepared.preprocessing) if recipe.init else None
    result = train(recipe, model, datasets, run_dir, show_progress=show_progress, resume=resume,
                   preprocessing=prepared.preprocessing, extra_callbacks=callbacks)
    if not main:
        return {"run_dir": str(run_dir), "process": processes.process_index}
    if recipe.training.strategy == "fsdp":  # sharded over the processes, which are done: evaluate a whole copy
        model = _whole_best_model(recipe, prepared.preprocessing, run_dir, next(model.parameters()).device)
    from mmcli.evaluation.plots import learning_curves

    from mmcli.recipe.schema import evaluation_splits

    splits = [s for s in evaluation_splits(recipe) if s in datasets]
    metrics = evaluate_splits(model, recipe, datasets, splits, plots=run_dir / "plots")
    if result.history:
        learning_curves(result.history, result.monitor, result.best_epoch, run_dir / "plots" / "learning-curves.png",
                        {name: task.main_metric for name, task in model.tasks.items()})
    metrics["training"] = {"monitor": result.monitor, "best_score": result.best_score, "best_epoch": result.best_epoch,
                           "epochs": result.epochs_run, "steps": result.steps, "stopped_early": result.stopped_early,
                           "seconds": round(result.seconds, 2), "parameters": sum(p.numel() for p in model.parameters()),
                           "skipped_batches": result.skipped_batches, "resumed_from": result.resumed_from,
                           "processes": result.processes, "peak_memory_mb": peak_memory_mb(), **result.extras}
    if initialised is not None:
        metrics["training"]["init"] = initialised
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    from mmcli.data.checks import data_warnings

    warnings = data_warnings(recipe, prepared.splits, prepared.preprocessing)
    if recipe.training.trackers:  # the final metrics and plots, to the trackers that take them
        from mmcli.training.callbacks.trackers import log_results

        warnings += log_results(recipe.training.trackers, run_dir, metrics)
    for warning in warnings:
        log(run_dir, f"warning: {warning}")
    for split in splits:
        shown = {name: {k: round(v, 4) for k, v in values.items() if isinstance(v, float)}
                 for name, values in metrics[split].items() if isinstance(values, dict)}
        log(run_dir, f"{split}: {shown}")
    return {"run_dir": str(run_dir), "preprocess": prepared.summary(), "metrics": metrics, "warnings": warnings,
            "skipped": prepared.skipped}
