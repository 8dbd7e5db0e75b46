"""The measured effect of the training options people copy from papers, each alone against the plain run:
``mixed_precision: bf16``, ``grad_accum_steps: 2``, ``compile: true`` and ``ema``. Each variant is one
``mmcli finetune`` process on the same cached set, the same seed and epochs; as JSON: training samples/s
(median over epochs after the first, which pays for warm-up and compilation), wall seconds of the training,
peak memory and the test metrics.

On a CPU bf16 runs only where the processor has bf16 instructions, and compile pays its compilation up front;
on a GPU (``--set training.device=cuda``) the figures are what they are for.

Usage: python benchmarks/training_options.py [--recipe recipes/quickstart.yaml] [--epochs 4]
       [--manifest data/shapes/manifest.csv] [--set key=value ...] [-o results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "plain": [],
    "bf16": ["training.mixed_precision=bf16"],
    "grad_accum_2": ["training.grad_accum_steps=2"],
    "compile": ["training.compile=true"],
    "ema": ["training.ema={decay: 0.99}"],
}


def run_variant(name: str, overrides: list[str], common: list[str], recipe: str, workdir: Path) -> dict:
    command = [sys.executable, "-m", "mmcli", "finetune", recipe, *common, *overrides, f"name=options-{name}",
               "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - start
    if done.returncode:
        return {"overrides": overrides, "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    result = json.loads(done.stdout)
    history = [json.loads(line) for line in (Path(result["run_dir"]) / "history.jsonl").read_text().splitlines()]
    training = result["metrics"]["training"]
    return {"overrides": overrides,
            "samples_per_s": statistics.median(row["samples_per_s"] for row in history[1:] or history),
            "first_epoch_s": history[0]["seconds"], "training_s": training["seconds"], "command_wall_s": round(wall, 1),
            "peak_memory_mb": training.get("peak_memory_mb"),
            "test": {task: values for task, values in result["metrics"].get("test", {}).items()
                     if isinstance(values, dict)}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "quickstart.yaml"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--manifest", default=str(REPO / "data" / "shapes" / "manifest.csv"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        common = [f"data.manifest={Path(args.manifest).resolve()}", f"data.cache_dir={workdir / 'cache'}",
                  f"output_dir={workdir / 'runs'}", f"training.epochs={args.epochs}",
                  "training.early_stopping_patience=null", *args.overrides]
        results = {name: run_variant(name, overrides, common, args.recipe, workdir)
                   for name, overrides in VARIANTS.items()}
    plain = results["plain"].get("samples_per_s")
    for values in results.values():
        if plain and "samples_per_s" in values:
            values["throughput_vs_plain"] = round(values["samples_per_s"] / plain, 3)
    report = {"benchmark": "training_options", "recipe": args.recipe, "epochs": args.epochs,
              "overrides": args.overrides, "variants": results,
              "benchmark_wall_s": round(time.perf_counter() - begun, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
