"""Robust fusion: a fused model trained with modality dropout, tested with one input missing or
fully corrupted (noise level 1.0), against the model trained without that input.

For each seed, input X and task: the fused model's score with X missing / corrupted at test
time, and the score of the same recipe trained with `~inputs.X` (the model of the remaining
inputs, same seed). The summary averages over seeds and says, per input and task, whether the
fused model stays at or above the reduced one (higher accuracy, lower MAE). Prints JSON; one
partial line per (seed, input) goes to stderr as it is measured. Needs the shapes data
(`make demo` makes it). 1 + (number of inputs) trainings per seed.

Usage: python benchmarks/robust_fusion.py [--recipe recipes/quickstart.yaml] [--dropout 0.3]
       [--seeds 0,1,2] [--set key=value ...] [--fused key=value ...] [--name robust-fused]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from mmcli.data.loader import split_tensors
from mmcli.evaluation.predictions import predict_tensors, task_metrics
from mmcli.evaluation.robustness import corrupt, without
from mmcli.recipe.loader import load_recipe, recipe_to_yaml
from mmcli.runs import METRICS_FILE, RECIPE_FILE
from mmcli.workflows.finetune import finetune
from mmcli.workflows.run_dir import open_run, split_dataset


def main_scores(model, tensors, batch_size):
    device = next(model.parameters()).device
    metrics = task_metrics(model, predict_tensors(model, tensors, batch_size, device)["predictions"], tensors)
    return {task: metrics[task][head.main_metric] for task, head in model.tasks.items()}


def finished_metrics(recipe) -> dict | None:
    """The metrics of a finished run of exactly this recipe, if there is one (the reduced models do
    not depend on the fused model's settings, so trying several of those need not retrain them)."""
    run_dir = Path(recipe.output_dir) / recipe.name
    saved, metrics = run_dir / RECIPE_FILE, run_dir / METRICS_FILE
    if (saved.is_file() and metrics.is_file() and saved.read_text() == recipe_to_yaml(recipe)
            and metrics.stat().st_mtime >= saved.stat().st_mtime):  # not an older run's metrics
        return json.loads(metrics.read_text())
    return None


def one_seed(args: argparse.Namespace, seed: int) -> tuple[dict, dict]:
    common = [f"seed={seed}", *args.set]
    fused_recipe = load_recipe(args.recipe, [*common, f"training.modality_dropout={args.dropout}", *args.fused,
                                             f"name={args.name}-seed{seed}"])
    if finished_metrics(fused_recipe) is None:
        finetune(fused_recipe, show_progress=False)
    run = open_run(Path(fused_recipe.output_dir) / fused_recipe.name)
    tensors = split_tensors(split_dataset(run, args.split), list(run.recipe.inputs), list(run.recipe.tasks))
    batch = run.recipe.training.eval_batch_size
    clean, inputs = main_scores(run.model, tensors, batch), {}
    for name, cfg in run.recipe.inputs.items():
        spec = run.preprocessing["inputs"][name]["spec"]
        noisy = corrupt(tensors, name, cfg.modality, spec, 1.0, torch.Generator().manual_seed(seed))
        reduced = load_recipe(args.recipe, [*common, f"~inputs.{name}", f"name=robust-without-{name}-seed{seed}"])
        reduced_metrics = finished_metrics(reduced) or finetune(reduced, show_progress=False)["metrics"]
        reduced_metrics = reduced_metrics[args.split]
        inputs[name] = {
            "fused_missing": main_scores(run.model, without(tensors, name), batch),
            "fused_corrupted": main_scores(run.model, noisy, batch),
            "trained_without": {t: reduced_metrics[t][run.model.tasks[t].main_metric] for t in run.model.tasks},
        }
        print(json.dumps({"seed": seed, "partial": name, **inputs[name]}), file=sys.stderr, flush=True)
    greater = {t: head.greater_is_better for t, head in run.model.tasks.items()}
    return {"clean": clean, "inputs": inputs}, greater


def at_or_above(fused: float, reference: float, greater: bool) -> bool:
    return fused >= reference if greater else fused <= reference


def summarise(per_seed: dict[int, dict], greater: dict[str, bool]) -> dict:
    mean = lambda values: round(statistics.fmean(values), 4)  # noqa: E731
    first = next(iter(per_seed.values()))
    summary: dict = {"clean": {t: mean([r["clean"][t] for r in per_seed.values()]) for t in first["clean"]}, "inputs": {}}
    for name in first["inputs"]:
        rows = {}
        for task in first["clean"]:
            values = {kind: [r["inputs"][name][kind][task] for r in per_seed.values()]
                      for kind in ("fused_missing", "fused_corrupted", "trained_without")}
            row = {kind: mean(v) for kind, v in values.items()}
            if len(per_seed) > 1:
                row |= {f"{kind}_std": round(statistics.stdev(v), 4) for kind, v in values.items()}
            for kind in ("fused_missing", "fused_corrupted"):
                wins = [at_or_above(f, r, greater[task]) for f, r in zip(values[kind], values["trained_without"])]
                row[f"{kind}_at_or_above"] = at_or_above(row[kind], row["trained_without"], greater[task])
                row[f"{kind}_seeds_at_or_above"] = f"{sum(wins)}/{len(wins)}"
            rows[task] = row
        summary["inputs"][name] = rows
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--split", default="test")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (model init, batch order, dropout draws)")
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides for every training")
    parser.add_argument("--fused", nargs="*", default=[], help="recipe overrides for the fused model only "
                                                              "(e.g. training.modality_noise=0.1)")
    parser.add_argument("--name", default="robust-fused", help="run name of the fused model (seed appended)")
    args = parser.parse_args()
    per_seed, greater = {}, {}
    for seed in (int(s) for s in args.seeds.split(",")):
        per_seed[seed], greater = one_seed(args, seed)
    print(json.dumps({"benchmark": "robust_fusion", "recipe": args.recipe, "modality_dropout": args.dropout,
                      "overrides": args.set, "fused_overrides": args.fused, "split": args.split, "seeds": list(per_seed),
                      "summary": summarise(per_seed, greater), "per_seed": per_seed}, indent=2))


if __name__ == "__main__":
    main()
