"""Robust fusion: a fused model trained with modality dropout, tested with one input missing or
fully corrupted (noise level 1.0), against the models that never had that input.

References per (seed, removed input X, task), all trained with the same recipe and seed:
- ``best_single``: the best single-modality model among the remaining inputs (``~inputs`` of all
  others), picked on its validation split as a user would pick it;
- ``best_single_on_eval``: the same, picked on the evaluation rows themselves. The pick and the score
  then use the same rows, which favours the reference (on a task the remaining inputs know nothing
  about, the best of three chance-level models is above chance on the rows that picked it);
- ``trained_without``: the model of all remaining inputs (``~inputs.X``), a stricter bar.

Scores are per row (accuracy: correct or not; MAE: absolute error), so the fused model and a
reference are compared on the same rows: the summary gives, per cell, the means over seeds, the
mean paired difference (positive = fused better), its 95% interval and a verdict: ``above`` (point
estimate at or above), ``within noise`` (below, but the interval covers 0) or ``below`` (the whole
interval is below 0). The claim is about a training recipe on data, so the interval counts both
sources of noise: the rows (a different evaluation sample) and the seeds (a different training run):
variance = var(per-seed differences) / seeds + var(per-row differences, averaged over seeds) / rows,
Student's t with Welch-Satterthwaite degrees of freedom. The verdicts with one source only are kept
(``over_rows`` treats the trained models as fixed; ``over_seeds`` treats the evaluation rows as fixed).
Evaluate on a large independent set (``--eval-manifest``, e.g. ``mmcli datasets make shapes
data/shapes-eval --size 4000 --seed 1``) so that intervals are tight; without it the recipe's test
split (200 rows on shapes) is used.

Finished runs of an identical resolved recipe are reused. Prints JSON; partial lines go to stderr.

Usage: python benchmarks/robust_fusion.py [--recipe recipes/quickstart.yaml] [--dropout 0.15]
       [--seeds 0,1,2] [--eval-manifest data/shapes-eval/manifest.csv] [--set key=value ...]
       [--fused key=value ...] [--name robust-fused]
       python benchmarks/robust_fusion.py --table RESULTS.json   (the markdown table of docs/robust-fusion.md)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch
import yaml

from mmcli.data.loader import split_tensors
from mmcli.evaluation.robustness import corrupt, without
from mmcli.inference.predictor import run_inference
from mmcli.recipe.loader import load_recipe, recipe_to_yaml, validate_recipe
from mmcli.registries import OBJECTIVES
from mmcli.runs import METRICS_FILE, RECIPE_FILE
from mmcli.workflows.finetune import finetune
from mmcli.workflows.run_dir import manifest_rows, open_run, split_dataset

REFERENCES = ("best_single", "best_single_on_eval", "trained_without")
CONDITIONS = ("fused_missing", "fused_corrupted")


def finished(recipe) -> bool:
    """A finished run of exactly this resolved recipe exists (saved recipes are re-validated, so a
    field added to the schema since, at its default, does not force a retraining)."""
    run_dir = Path(recipe.output_dir) / recipe.name
    saved, metrics = run_dir / RECIPE_FILE, run_dir / METRICS_FILE
    if not (saved.is_file() and metrics.is_file() and metrics.stat().st_mtime >= saved.stat().st_mtime):
        return False
    return recipe_to_yaml(validate_recipe(yaml.safe_load(saved.read_text()))) == recipe_to_yaml(recipe)


def trained_run(recipe):
    if not finished(recipe):
        finetune(recipe, show_progress=False, overwrite=True)
    return open_run(Path(recipe.output_dir) / recipe.name)


def validation_score(run, task: str) -> float:
    """The run's main metric for ``task`` on its validation split (from its metrics.json)."""
    metrics = json.loads((run.run_dir / METRICS_FILE).read_text())
    return metrics["validation"][task][run.model.tasks[task].main_metric]


class EvaluationRows:
    """The evaluation rows as tensors, decoded once: a run whose fitted processors and label encoders
    match those of rows already decoded (a subset of the inputs, same specs) reuses them."""

    def __init__(self, manifest: str | None, split: str) -> None:
        self.manifest, self.split, self.decoded = manifest, split, []

    def tensors(self, run) -> dict[str, torch.Tensor]:
        mine = run.preprocessing
        for fitted, tensors in self.decoded:
            if fitted["tasks"] == mine["tasks"] and all(fitted["inputs"].get(n) == spec for n, spec in mine["inputs"].items()):
                return tensors
        dataset = manifest_rows(run, self.manifest, "eval", with_targets=True).dataset if self.manifest \
            else split_dataset(run, self.split)
        tensors = split_tensors(dataset, list(run.recipe.inputs), list(run.recipe.tasks))
        self.decoded.append((mine, tensors))
        return tensors


def row_scores(model, tensors, batch_size, gated: dict | None = None, answered: dict | None = None) -> dict[str, list[float]]:
    """Per task, each row's contribution to the main metric (1/0 correct; absolute error). With a
    corruption gate, ``gated`` receives the share of rows it treated as missing, per input; with a
    missing-input fallback, ``answered`` the share of rows answered otherwise than complete rows, per task."""
    inference = run_inference(model, tensors, batch_size, next(model.parameters()).device)
    predictions = inference.predictions
    for key, sink in (("corruption_gate", gated), ("missing_fallback", answered)):
        if sink is not None and key in model.wrappers:
            unusual = model.wrappers[key].unusual_rows(inference.reports.get(key, {}))
            sink.update({n: round(float(rows.float().mean()), 4) for n, rows in unusual.items()})
    scores = {}
    for task, head in model.tasks.items():
        predicted, true = head.metric_inputs(predictions[task], tensors[task])
        if head.main_metric == "accuracy":
            scores[task] = [float(p == t) for p, t in zip(predicted, true)]
        elif head.main_metric == "mae":
            scores[task] = [abs(p - t) for p, t in zip(predicted, true)]
        else:
            raise ValueError(f"task {task}: no per-row form of {head.main_metric}")
    return scores


def mean(values) -> float:
    return statistics.fmean(values)


def one_seed(args: argparse.Namespace, seed: int, rows: EvaluationRows) -> dict:
    common = [f"seed={seed}", *args.set]
    fused = trained_run(load_recipe(args.recipe, [*common, f"training.modality_dropout={args.dropout}", *args.fused,
                                                  f"name={args.name}-seed{seed}"]))
    tensors, batch = rows.tensors(fused), fused.recipe.training.eval_batch_size
    inputs = list(fused.recipe.inputs)
    singles, single_validation = {}, {}
    for name in inputs:
        others = [f"~inputs.{other}" for other in inputs if other != name]
        single = trained_run(load_recipe(args.recipe, [*common, *others, f"name=robust-only-{name}-seed{seed}"]))
        singles[name] = row_scores(single.model, rows.tensors(single), batch)
        single_validation[name] = {task: validation_score(single, task) for task in single.model.tasks}
    gated_clean: dict = {}
    answered_clean: dict = {}
    result = {"clean": row_scores(fused.model, tensors, batch, gated_clean, answered_clean), "inputs": {},
              "gated": {"clean": gated_clean}, "answered": {"clean": answered_clean}}
    for name, cfg in fused.recipe.inputs.items():
        spec = fused.preprocessing["inputs"][name]["spec"]
        noisy = corrupt(tensors, name, cfg.modality, spec, 1.0, torch.Generator().manual_seed(seed))
        reduced = trained_run(load_recipe(args.recipe, [*common, f"~inputs.{name}", f"name=robust-without-{name}-seed{seed}"]))
        gated_noisy: dict = {}
        answered_missing: dict = {}
        answered_noisy: dict = {}
        cell = {"fused_missing": row_scores(fused.model, without(tensors, name), batch, answered=answered_missing),
                "fused_corrupted": row_scores(fused.model, noisy, batch, gated_noisy, answered_noisy),
                "trained_without": row_scores(reduced.model, rows.tensors(reduced), batch),
                "best_single": {}, "best_single_input": {}, "best_single_on_eval": {}, "best_single_on_eval_input": {}}
        for task, head in fused.model.tasks.items():
            pick = max if head.metrics[head.main_metric] else min
            remaining = [other for other in inputs if other != name]
            best = pick(remaining, key=lambda other: single_validation[other][task])
            cell["best_single"][task], cell["best_single_input"][task] = singles[best][task], best
            best = pick(remaining, key=lambda other: mean(singles[other][task]))
            cell["best_single_on_eval"][task], cell["best_single_on_eval_input"][task] = singles[best][task], best
        result["inputs"][name] = cell
        if gated_noisy:
            result["gated"][f"{name} corrupted"] = gated_noisy[name]
        if answered_missing:
            result["answered"][f"{name} missing"], result["answered"][f"{name} corrupted"] = answered_missing, answered_noisy
        print(json.dumps({"seed": seed, "removed": name, **{
            kind: {t: round(mean(v), 4) for t, v in cell[kind].items()} for kind in (*CONDITIONS, *REFERENCES)}}),
            file=sys.stderr, flush=True)
    return result


# two-sided 95% quantiles of Student's t, by degrees of freedom (1..9); above, a Cornish-Fisher expansion
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def t_975(degrees: float) -> float:
    if degrees < 1:
        return math.inf
    if degrees < 10:
        return T_975[int(degrees)]  # rounded down: the wider interval
    z = 1.959964
    return z + (z**3 + z) / (4 * degrees) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * degrees**2)


def _verdict(difference: float, half_width: float) -> str:
    return "above" if difference >= 0 else ("within noise" if difference + half_width >= 0 else "below")


def _interval(difference: float, half: float) -> dict:
    return {"interval": [round(difference - half, 4), round(difference + half, 4)],
            "verdict": _verdict(difference, half)}


def paired(fused: list[list[float]], reference: list[list[float]], greater: bool) -> dict:
    """Seeds' per-row scores -> means, mean paired difference (positive = fused better), 95% interval over
    rows and seeds, verdict; and the interval and verdict with one source of noise only."""
    sign = 1.0 if greater else -1.0
    per_row = [sign * (mean(f) - mean(r)) for f, r in zip(zip(*fused), zip(*reference))]
    per_seed = [sign * (mean(f) - mean(r)) for f, r in zip(fused, reference)]
    diff, rows, seeds = mean(per_row), len(per_row), len(per_seed)
    rows_var = statistics.variance(per_row) / rows if rows > 1 else 0.0
    seeds_var = statistics.variance(per_seed) / seeds if seeds > 1 else math.inf
    both = rows_var + seeds_var
    # Welch-Satterthwaite: the degrees of freedom of a sum of two variance estimates
    degrees = both**2 / (seeds_var**2 / (seeds - 1) + (rows_var**2 / (rows - 1) if rows > 1 else 0.0)) \
        if math.isfinite(both) and both > 0 else (math.inf if both == 0 else 0.0)
    return {"fused": round(mean(map(mean, fused)), 4), "reference": round(mean(map(mean, reference)), 4),
            "difference": round(diff, 4), **_interval(diff, t_975(degrees) * math.sqrt(both) if both else 0.0),
            "degrees_of_freedom": round(degrees, 1) if math.isfinite(degrees) else None,
            "seeds_at_or_above": sum(d >= 0 for d in per_seed),
            "over_rows": _interval(diff, 1.96 * math.sqrt(rows_var)),
            "over_seeds": {"differences": [round(d, 4) for d in per_seed],
                           **_interval(mean(per_seed), t_975(seeds - 1) * math.sqrt(seeds_var) if seeds > 1 else math.inf)}}


def summarise(per_seed: list[dict], greater: dict[str, bool]) -> dict:
    summary: dict = {"clean": {t: round(mean([mean(r["clean"][t]) for r in per_seed]), 4) for t in greater},
                     "inputs": {}, "verdicts": {}}
    counts = {ref: {basis: {"above": 0, "within noise": 0, "below": 0}
                    for basis in ("rows_and_seeds", "over_rows", "over_seeds")} for ref in REFERENCES}
    for name in per_seed[0]["inputs"]:
        cells = {}
        for task in greater:
            cell = {f"{ref}_inputs": [r["inputs"][name][f"{ref}_input"][task] for r in per_seed]
                    for ref in ("best_single", "best_single_on_eval")}
            for condition in CONDITIONS:
                for ref in REFERENCES:
                    cell[f"{condition} vs {ref}"] = paired([r["inputs"][name][condition][task] for r in per_seed],
                                                            [r["inputs"][name][ref][task] for r in per_seed], greater[task])
                    compared = cell[f"{condition} vs {ref}"]
                    for basis, verdict in (("rows_and_seeds", compared["verdict"]),
                                           ("over_rows", compared["over_rows"]["verdict"]),
                                           ("over_seeds", compared["over_seeds"]["verdict"])):
                        counts[ref][basis][verdict] += 1
            cells[task] = cell
        summary["inputs"][name] = cells
    summary["verdicts"] = counts
    return summary


def seed_means(result: dict) -> dict:
    means = lambda scores: {t: round(mean(v), 4) for t, v in scores.items()}  # noqa: E731
    gated = {"treated_as_missing": result["gated"]} if result["gated"]["clean"] else {}
    if result["answered"]["clean"]:
        gated["answered_by"] = result["answered"]
    return {"clean": means(result["clean"]),
            "inputs": {name: {kind: means(cell[kind]) for kind in (*CONDITIONS, *REFERENCES)}
                       | {key: cell[key] for key in ("best_single_input", "best_single_on_eval_input")}
                       for name, cell in result["inputs"].items()}} | gated


def markdown_table(result: dict) -> str:
    """The table of docs/robust-fusion.md from a results JSON: per removed input and task, the fused model (missing,
    corrupted) against the references, with the verdicts (rows and seeds) against the single-modality
    model picked on validation and the one picked on the scored rows."""
    lines = ["| input taken away | task | fused, missing | fused, corrupted | best single-modality (input) "
             "| same, picked on the scored rows | trained without it | verdict vs single (missing / corrupted) "
             "| vs single picked on the scored rows |", "|---|---|---|---|---|---|---|---|---|"]
    for name, cells in result["summary"]["inputs"].items():
        for task, cell in cells.items():
            missing, corrupted = cell["fused_missing vs best_single"], cell["fused_corrupted vs best_single"]
            strict = cell["fused_missing vs trained_without"]
            picked = "/".join(sorted(set(cell["best_single_inputs"])))
            on_eval = [cell.get(f"{c} vs best_single_on_eval") for c in CONDITIONS]
            on_eval_picked = "/".join(sorted(set(cell.get("best_single_on_eval_inputs", []))))
            lines.append(f"| {name} | {task} | {missing['fused']:.4f} | {corrupted['fused']:.4f} | "
                         f"{missing['reference']:.4f} ({picked}) | "
                         + (f"{on_eval[0]['reference']:.4f} ({on_eval_picked}) | " if on_eval[0] else "- | ")
                         + f"{strict['reference']:.4f} | {missing['verdict']} / {corrupted['verdict']} | "
                         + (f"{on_eval[0]['verdict']} / {on_eval[1]['verdict']} |" if on_eval[0] else "- |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default=None, help="print the markdown table of a results JSON and exit")
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--dropout", type=float, default=0.15)
    parser.add_argument("--split", default="test", help="split to evaluate on when there is no --eval-manifest")
    parser.add_argument("--eval-manifest", default=None, help="labelled manifest of independent rows to evaluate on")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (model init, batch order, dropout draws)")
    parser.add_argument("--set", nargs="*", default=[], help="recipe overrides for every training")
    parser.add_argument("--fused", nargs="*", default=[], help="recipe overrides for the fused model only "
                                                              "(e.g. model.unimodal_loss=0.5)")
    parser.add_argument("--name", default="robust-fused", help="run name of the fused model (seed appended)")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    rows = EvaluationRows(args.eval_manifest, args.split)
    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed = [one_seed(args, seed, rows) for seed in seeds]
    greater = {t: OBJECTIVES.get(cfg.type).metrics[OBJECTIVES.get(cfg.type).main_metric]
               for t, cfg in load_recipe(args.recipe, args.set).tasks.items()}
    print(json.dumps({"benchmark": "robust_fusion", "recipe": args.recipe, "modality_dropout": args.dropout,
                      "overrides": args.set, "fused_overrides": args.fused, "seeds": seeds,
                      "evaluated_on": args.eval_manifest or f"split {args.split}",
                      "rows": len(per_seed[0]["clean"][next(iter(greater))]),
                      "summary": summarise(per_seed, greater), "per_seed": [seed_means(r) for r in per_seed]}, indent=2))


if __name__ == "__main__":
    main()
