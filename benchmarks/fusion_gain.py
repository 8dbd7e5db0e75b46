"""Fused model vs single-modality runs of the same recipe on the fusion-dependent task, as JSON.

Each single-modality run is the recipe with the other inputs removed by `~inputs.NAME`
overrides, exactly as a user would run it. Needs the shapes data (`make demo` makes it).

Usage: python benchmarks/fusion_gain.py [--recipe recipes/quickstart.yaml] [--task scene] [--metric accuracy]
"""

from __future__ import annotations

import argparse
import json
import time

from mmcli.recipe.loader import load_recipe
from mmcli.workflows.finetune import finetune


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--task", default="scene")
    parser.add_argument("--metric", default="accuracy")
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    inputs = list(load_recipe(args.recipe).inputs)
    runs = {"fused": []} | {f"only-{name}": [f"~inputs.{other}" for other in inputs if other != name] for name in inputs}
    runs["fused"] = []
    results = {}
    for label, overrides in runs.items():
        recipe = load_recipe(args.recipe, [*overrides, f"name=bench-{label}"])
        start = time.perf_counter()
        metrics = finetune(recipe, show_progress=False, overwrite=True)["metrics"]
        results[label] = {"value": metrics[args.split][args.task][args.metric], "seconds": round(time.perf_counter() - start, 1)}
    best_single = max(v["value"] for k, v in results.items() if k != "fused")
    print(json.dumps({"benchmark": "fusion_gain", "recipe": args.recipe, "task": args.task, "metric": args.metric,
                      "split": args.split, "results": results, "gain_over_best_single": results["fused"]["value"] - best_single},
                     indent=2))


if __name__ == "__main__":
    main()
