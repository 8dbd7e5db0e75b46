"""Robust fusion: a fused model trained with modality dropout, tested with one input missing or
fully corrupted (noise level 1.0), against the model trained without that input.

For each input X and task: score of the fused model with X missing / corrupted at test time,
and the score of the same recipe trained with `~inputs.X` (the model of the remaining inputs).
Prints JSON. Needs the shapes data (`make demo` makes it). About 5 trainings.

Usage: python benchmarks/robust_fusion.py [--recipe recipes/quickstart.yaml] [--dropout 0.3]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from mmcli.data.loader import split_tensors
from mmcli.evaluation.predictions import predict_tensors, task_metrics
from mmcli.evaluation.robustness import corrupt, without
from mmcli.recipe.loader import load_recipe
from mmcli.workflows.finetune import finetune
from mmcli.workflows.run_dir import open_run, split_dataset


def main_scores(model, tensors, batch_size):
    device = next(model.parameters()).device
    metrics = task_metrics(model, predict_tensors(model, tensors, batch_size, device)["predictions"], tensors)
    return {task: metrics[task][head.main_metric] for task, head in model.tasks.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    fused_recipe = load_recipe(args.recipe, [f"training.modality_dropout={args.dropout}", "name=robust-fused"])
    fused_dir = finetune(fused_recipe, show_progress=False)["run_dir"]
    run = open_run(fused_dir)
    tensors = split_tensors(split_dataset(run, args.split), list(run.recipe.inputs), list(run.recipe.tasks))
    batch = run.recipe.training.eval_batch_size
    report = {"benchmark": "robust_fusion", "recipe": args.recipe, "modality_dropout": args.dropout, "split": args.split,
              "clean": main_scores(run.model, tensors, batch), "inputs": {}}
    for name, cfg in run.recipe.inputs.items():
        spec = run.preprocessing["inputs"][name]["spec"]
        noisy = corrupt(tensors, name, cfg.modality, spec, 1.0, torch.Generator().manual_seed(0))
        reduced = load_recipe(args.recipe, [f"~inputs.{name}", f"name=robust-without-{name}"])
        reduced_metrics = finetune(reduced, show_progress=False)["metrics"][args.split]
        report["inputs"][name] = {
            "fused_missing": main_scores(run.model, without(tensors, name), batch),
            "fused_corrupted": main_scores(run.model, noisy, batch),
            "trained_without": {t: reduced_metrics[t][run.model.tasks[t].main_metric] for t in run.model.tasks},
        }
        print(json.dumps({"partial": name, **report["inputs"][name]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
