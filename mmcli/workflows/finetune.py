"""finetune: preprocess (or reuse the cache), train, evaluate, write the run directory."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mmcli.recipe.loader import recipe_to_yaml
from mmcli.runs import ENV_FILE, METRICS_FILE, PREPROCESSING_FILE, RECIPE_FILE, atomic_write_json, atomic_write_text, environment_record


def run_directory(recipe: Any, run_dir: str | Path | None = None) -> Path:
    return Path(run_dir) if run_dir else Path(recipe.output_dir) / recipe.name


def finetune(recipe: Any, run_dir: str | Path | None = None, num_proc: int = 1, show_progress: bool = True,
             argv: list[str] | None = None) -> dict[str, Any]:
    from mmcli.data.preprocess import preprocess
    from mmcli.evaluation.predictions import evaluate_splits
    from mmcli.models.multimodal import build_model
    from mmcli.training.seeding import seed_everything
    from mmcli.training.trainer import train

    run_dir = run_directory(recipe, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / RECIPE_FILE, recipe_to_yaml(recipe))
    atomic_write_json(run_dir / ENV_FILE, environment_record(recipe.seed, argv))

    prepared = preprocess(recipe, num_proc=num_proc, quiet=not show_progress)
    atomic_write_json(run_dir / PREPROCESSING_FILE, prepared.preprocessing)
    atomic_write_json(run_dir / "data.json", {"cache": str(prepared.cache_dir.resolve()), **prepared.summary()})
    shutil.copyfile(prepared.errors_file, run_dir / "errors.jsonl")
    datasets = prepared.load()

    seed_everything(recipe.seed)
    model = build_model(recipe, prepared.preprocessing)
    result = train(recipe, model, datasets, run_dir, show_progress=show_progress)
    splits = [s for s in recipe.evaluation.splits if s in datasets]
    metrics = evaluate_splits(model, recipe, datasets, splits)
    metrics["training"] = {"monitor": result.monitor, "best_score": result.best_score, "best_epoch": result.best_epoch,
                           "epochs": result.epochs_run, "steps": result.steps, "stopped_early": result.stopped_early,
                           "seconds": round(result.seconds, 2), "parameters": sum(p.numel() for p in model.parameters())}
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    return {"run_dir": str(run_dir), "preprocess": prepared.summary(), "metrics": metrics,
            "skipped": prepared.skipped}
