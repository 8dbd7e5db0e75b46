"""Do image augmentation and parameter groups pay? The from-scratch contrastive recipe on shapes in three
arms per seed: ``neither`` (weight decay on every parameter, no augmentation), ``plain`` (parameter groups:
no weight decay on norms, biases, embeddings, temperatures; the default) and ``augmented`` (parameter
groups and augmentation of its image input), as one JSON object on stdout: test recall@1/5/10 of each arm,
the differences per seed and their means (progress lines go to stderr).

The default augmentation keeps what the captions say true: a horizontal flip (the caption's direction is the
video's, not the image's) and brightness/contrast/saturation jitter but no hue shift (the caption names the
colour). It has no crop: the caption names the shape's size (small < 0.5 <= medium < 0.7 <= large of the
canvas), and even a mild crop (area 0.8-1) enlarges a shape by up to 12%, which moves up to 23% of
the shapes across a size boundary. Every arm
uses the recipe's other settings.

Usage: python benchmarks/augmentation_gain.py [--recipe recipes/contrastive.yaml] [--seeds 0,1,2]
       [--input image] [--augment YAML] [--split test] [--set key=value ...]
e.g.   python benchmarks/augmentation_gain.py --set data.manifest=data/small/manifest.csv training.epochs=1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from mmcli.recipe.loader import load_recipe
from mmcli.workflows.finetune import finetune

DEFAULT_AUGMENT = "{horizontal_flip: 0.5, color_jitter: {brightness: 0.2, contrast: 0.2, saturation: 0.2}}"
RECALLS = ("recall@1", "recall@5", "recall@10")


def _recalls(result: dict, split: str, objective: str) -> dict[str, float]:
    metrics = result["metrics"][split][objective]
    return {name: float(metrics[name]) for name in RECALLS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/contrastive.yaml")
    parser.add_argument("--seeds", default="0", help="comma-separated run seeds")
    parser.add_argument("--input", default="image", help="the input to augment")
    parser.add_argument("--augment", default=DEFAULT_AUGMENT, help="inputs.INPUT.augment, as YAML")
    parser.add_argument("--objective", default="clip")
    parser.add_argument("--split", default="test")
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides for both arms")
    args = parser.parse_args()
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        row: dict = {"seed": seed}
        for arm, extra in (("neither", ["training.weight_decay_all=true"]), ("plain", []),
                           ("augmented", [f"inputs.{args.input}.augment={args.augment}"])):
            recipe = load_recipe(args.recipe, [*args.set, *extra, f"seed={seed}"])
            recipe = recipe.model_copy(update={"name": f"{recipe.name}-augmentation-gain-{arm}-seed{seed}"})
            result = finetune(recipe, show_progress=False, overwrite=True)
            row[arm] = _recalls(result, args.split, args.objective)
            row[f"{arm}_seconds"] = result["metrics"]["training"]["seconds"]
        row["difference"] = {name: row["augmented"][name] - row["plain"][name] for name in RECALLS}
        row["difference_vs_neither"] = {name: row["augmented"][name] - row["neither"][name] for name in RECALLS}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("seed", "neither", "plain", "augmented", "difference",
                                              "difference_vs_neither")}), file=sys.stderr, flush=True)

    def mean(arm: str, name: str) -> float:
        return statistics.fmean(row[arm][name] for row in rows)

    def spread(arm: str, name: str) -> float:
        return statistics.stdev(row[arm][name] for row in rows) if len(rows) > 1 else 0.0

    summary = {arm: {name: {"mean": mean(arm, name), "std": spread(arm, name)} for name in RECALLS}
               for arm in ("neither", "plain", "augmented", "difference", "difference_vs_neither")}
    summary["augmented_at_least_plain"] = {name: all(row["difference"][name] >= 0 for row in rows) for name in RECALLS}
    summary["augmented_at_least_neither"] = {name: all(row["difference_vs_neither"][name] >= 0 for row in rows)
                                             for name in RECALLS}
    print(json.dumps({"benchmark": "augmentation_gain", "recipe": args.recipe, "input": args.input,
                      "augment": args.augment, "overrides": args.set, "objective": args.objective,
                      "split": args.split, "seeds": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
