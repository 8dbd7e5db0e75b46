"""Does pretraining pay? The pretrain-then-finetune recipe against the same fine-tuning from scratch, per
seed (the seed sets the initialisation, the batch order and which 5% of the train rows keep their
labels), as JSON: the test metric of both, the per-seed gain, its mean and the seed-to-seed spread.

Usage: python benchmarks/pretrain_gain.py [--recipe recipes/pretrain-then-finetune.yaml] [--seeds 0,1,2]
       [--task scene] [--metric accuracy] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from mmcli.recipe.loader import load_recipe
from mmcli.recipe.stages import finetuning_recipe, pretraining_recipe
from mmcli.workflows.finetune import finetune


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/pretrain-then-finetune.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--task", default="scene")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--split", default="test")
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides for every run")
    args = parser.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        recipe = load_recipe(args.recipe, [*args.set, f"seed={seed}"])
        base = f"{recipe.name}-seed{seed}"
        pretrained = finetune(pretraining_recipe(recipe.model_copy(update={"name": base})), show_progress=False,
                              overwrite=True)
        tuned = finetune(finetuning_recipe(recipe.model_copy(update={"name": base}), pretrained["run_dir"]),
                         show_progress=False, overwrite=True)
        scratch = finetune(recipe.model_copy(update={"name": f"{base}-scratch"}), show_progress=False, overwrite=True)
        row = {"seed": seed,
               "pretrained": tuned["metrics"][args.split][args.task][args.metric],
               "scratch": scratch["metrics"][args.split][args.task][args.metric],
               "pretrain_seconds": pretrained["metrics"]["training"]["seconds"],
               "pretrain_metrics": {k: v for k, v in pretrained["metrics"][args.split].items() if isinstance(v, dict)}}
        row["gain"] = row["pretrained"] - row["scratch"]
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("seed", "pretrained", "scratch", "gain")}), file=sys.stderr, flush=True)

    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    gains = [r["gain"] for r in rows]
    summary = {name: {"mean": statistics.fmean(r[name] for r in rows), "std": spread([r[name] for r in rows])}
               for name in ("pretrained", "scratch")}
    summary["gain"] = {"mean": statistics.fmean(gains), "std": spread(gains), "min": min(gains),
                       "every_seed_gains": all(g > 0 for g in gains)}
    summary["gain"]["above_seed_spread"] = summary["gain"]["mean"] > max(summary["pretrained"]["std"], summary["scratch"]["std"])
    print(json.dumps({"benchmark": "pretrain_gain", "recipe": args.recipe, "overrides": args.set,
                      "task": args.task, "metric": args.metric, "split": args.split, "seeds": rows,
                      "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
