"""run: every stage of a recipe (preprocess, finetune, evaluate) and the --check of expected metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_expected(recipe: Any, metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per ``expected`` entry: expected value, tolerance, measured value and whether it passes."""
    rows = []
    for item in recipe.expected:
        measured = metrics.get(item.split, {}).get(item.task, {}).get(item.metric)
        ok = measured is not None and abs(measured - item.value) <= item.tolerance
        rows.append({"split": item.split, "task": item.task, "metric": item.metric, "expected": item.value,
                     "tolerance": item.tolerance, "measured": measured, "ok": bool(ok)})
    return rows


def run_recipe(recipe: Any, run_dir: str | Path | None = None, check: bool = False, num_proc: int = 1,
               show_progress: bool = True, argv: list[str] | None = None, resume: bool = False,
               overwrite: bool = False) -> dict[str, Any]:
    """Every stage: with a ``pretrain`` section, pretraining (run ``NAME-pretrain``) then fine-tuning
    initialised from it; else fine-tuning alone. ``check`` compares each stage's ``expected``."""
    from mmcli.recipe.stages import finetuning_recipe, pretraining_recipe
    from mmcli.run_slot import previous_run
    from mmcli.workflows.finetune import finetune, run_directory

    stages = []
    if recipe.pretrain is not None:
        first = pretraining_recipe(recipe)
        pretrained = finetune(first, num_proc=num_proc, show_progress=show_progress, argv=argv, resume=resume,
                              overwrite=overwrite)
        stages.append((first, pretrained))
        recipe = finetuning_recipe(recipe, pretrained["run_dir"])
        # --resume goes on where the stopped run was: a stage it never reached starts (finetune refuses to
        # resume a run that is not there)
        resume = resume and previous_run(run_directory(recipe, run_dir)) is not None
    result = finetune(recipe, run_dir=run_dir, num_proc=num_proc, show_progress=show_progress, argv=argv, resume=resume,
                      overwrite=overwrite)
    if stages:
        result["pretrain"] = stages[0][1]
    if check:
        result["check"] = [row | {"stage": "pretrain"} for stage, stage_result in stages
                           for row in check_expected(stage, stage_result["metrics"])]
        result["check"] += check_expected(recipe, result["metrics"])
        result["check_passed"] = all(row["ok"] for row in result["check"])
    return result
