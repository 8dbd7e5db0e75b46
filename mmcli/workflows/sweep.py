"""run --sweep: train variants of a recipe (a grid of override values) and compare them in one table.

Each variant runs in its own process (`mmcli finetune ... --json`), so the peak memory it
reports is its own and no state leaks from one variant to the next.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from typing import Any

import yaml

from mmcli.errors import RecipeError


def split_values(text: str) -> list[str]:
    """Split ``a,b,{x: 1, y: 2}`` on the commas that are not inside brackets or braces."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_sweep_options(options: list[str]) -> list[dict[str, list[Any]]]:
    """``--sweep key=v1,v2`` options (all together one grid) -> [{key: [v1, v2]}]."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        if "=" not in option:
            raise RecipeError(f"--sweep '{option}': expected key.path=value1,value2,...")
        key, raw = option.split("=", 1)
        parsed = yaml.safe_load(raw) if raw.strip().startswith("[") else None
        grid[key] = parsed if isinstance(parsed, list) else [yaml.safe_load(value) for value in split_values(raw)]
    return [grid] if grid else []


def variants(grids: list[dict[str, list[Any]]]) -> list[list[str]]:
    """Every combination of each grid (grids are concatenated), as lists of overrides."""
    result = []
    for grid in grids:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            result.append([f"{k}={_yaml_value(v)}" for k, v in zip(keys, combo)])
    return result


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _label(overrides: list[str]) -> str:
    """Short labels: ``model.fusion.type=concat`` -> ``fusion=concat``, ``model.attention={type: mult}`` -> ``attention=mult``."""
    parts = []
    for override in overrides:
        key, value = override.split("=", 1)
        keys = key.split(".")
        name = keys[-2] if keys[-1] == "type" and len(keys) > 1 else keys[-1]
        parsed = yaml.safe_load(value)
        shown = parsed.get("type", value) if isinstance(parsed, dict) else value
        parts.append(f"{name}={shown}")
    return " ".join(parts)


def run_variant(recipe: str, base_overrides: list[str], overrides: list[str], name: str, num_proc: int,
                overwrite: bool = False) -> dict[str, Any]:
    args = [sys.executable, "-m", "mmcli", "finetune", recipe, *base_overrides, *overrides, f"name={name}",
            "--json", "--num-proc", str(num_proc), *(["--overwrite"] if overwrite else [])]
    start = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True)
    stdout, stderr = done.stdout, done.stderr
    row: dict[str, Any] = {"variant": _label(overrides), "overrides": overrides, "run": name,
                           "seconds": round(time.perf_counter() - start, 1)}
    try:
        payload = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        payload = {"ok": False, "error": (stderr.strip().splitlines() or ["no output"])[-1]}
    if not payload.get("ok"):
        return row | {"ok": False, "error": payload.get("error")}
    metrics = payload["metrics"]
    return row | {"ok": True, "metrics": {k: v for k, v in metrics.items() if k != "training"},
                  "parameters": metrics["training"]["parameters"], "train_seconds": metrics["training"]["seconds"],
                  "peak_memory_mb": metrics["training"].get("peak_memory_mb"),
                  "run_dir": payload["run_dir"]}


def run_sweep(recipe_path: str, recipe: Any, base_overrides: list[str], grids: list[dict[str, list[Any]]],
              num_proc: int = 1, show_progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    from mmcli.progress import task_progress

    from mmcli.recipe.loader import load_recipe

    combos = variants(grids)
    if not combos:
        raise RecipeError("sweep: nothing to sweep", hint="give --sweep key=v1,v2 or a 'sweep:' section in the recipe")
    for overrides in combos:  # every variant validated before the first one trains
        try:
            load_recipe(recipe_path, [*base_overrides, *overrides])
        except RecipeError as error:
            raise RecipeError(f"sweep variant {_label(overrides)}: {error.message}", hint=error.hint) from None
    rows = []
    with task_progress("sweep", len(combos), enabled=show_progress) as advance:
        for index, overrides in enumerate(combos):
            rows.append(run_variant(recipe_path, base_overrides, overrides, f"{recipe.name}-sweep-{index:02d}", num_proc,
                                    overwrite))
            advance(1)
    from mmcli.recipe.schema import evaluation_splits

    scored = evaluation_splits(recipe) or [recipe.data.train_split]
    split = next((s for s in scored if s != recipe.data.validation_split), scored[-1])
    return {"sweep": rows, "split": split, "main_metrics": _main_metrics(rows, [*recipe.tasks, *recipe.objectives])}


def _main_metrics(rows: list[dict[str, Any]], objectives: list[str]) -> dict[str, str]:
    """objective -> the first metric it reports (its main one), for the sweep table's columns."""
    for row in rows:
        if row.get("ok"):
            for split_metrics in row["metrics"].values():
                return {name: next(iter(m)) for name, m in split_metrics.items()
                        if name in objectives and isinstance(m, dict) and m}
    return {}
