"""The stages of a run, each measured, as JSON: preprocessing rows/s per modality with 1 and 2 processes and
the cached re-run; cold start of `mmcli --help`, `mmcli finetune --help`, `mmcli recipes ls` and `mmcli
evaluate RUN`; predict latency per row at batch 1 and 64 (a loaded Predictor); and each CLI stage's peak
memory (preprocess, finetune, evaluate, predict: the child process's peak resident set).

It makes a shapes set and a short quickstart run in a temporary folder. Medians of --runs repetitions;
the machine is shared and noisy, so compare within one run, on an idle machine.

Usage: python benchmarks/stages.py [--rows 400] [--runs 3] [-o results.json]
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
ONE_INPUT = {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 32}},
             "audio": {"modality": "audio", "column": "audio", "preprocessing": {"duration": 1.0, "n_mels": 32}},
             "video": {"modality": "video", "column": "video", "preprocessing": {"num_frames": 8, "size": 16}},
             "text": {"modality": "text", "column": "text", "preprocessing": {"max_length": 16}}}


def cli(args: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak resident MB) of one mmcli command in a child process."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "mmcli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mmcli {' '.join(args)} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def preprocessing(root: Path, rows: int, runs: int) -> dict:
    import yaml

    out = {}
    for modality, settings in ONE_INPUT.items():
        recipe = {"name": modality, "data": {"manifest": str(root / "shapes" / "manifest.csv")},
                  "inputs": {modality: settings}, "tasks": {"shape": {"type": "classification", "column": "shape"}}}
        path = root / f"{modality}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        figures, walls = {}, {}
        for processes in (1, 2):
            times = []
            for repeat in range(runs):
                cache = root / f"cache-{modality}-{processes}-{repeat}"
                times.append(cli(["preprocess", str(path), f"data.cache_dir={cache}", "--num-proc", str(processes),
                                  "--quiet"], root)[0])
            walls[processes] = statistics.median(times)
            figures[f"rows_per_s_{processes}_process"] = round(rows / walls[processes], 1)
        cached = statistics.median(
            cli(["preprocess", str(path), f"data.cache_dir={root / f'cache-{modality}-1-0'}", "--quiet"], root)[0]
            for _ in range(runs))
        figures["cached_rerun_s"] = round(cached, 3)
        # the command's fixed cost (start-up, imports, reading the manifest: what a cached rerun pays) taken out
        for processes, wall in walls.items():
            figures[f"decoding_rows_per_s_{processes}_process"] = round(rows / max(wall - cached, 1e-3), 1)
        out[modality] = figures
    return out


def cold_start(root: Path, run: Path, runs: int) -> dict:
    commands = {"mmcli --help": ["--help"], "mmcli finetune --help": ["finetune", "--help"],
                "mmcli recipes ls": ["recipes", "ls"], "mmcli evaluate RUN": ["evaluate", str(run), "--quiet"]}
    return {name: round(statistics.median(cli(args, root)[0] for _ in range(runs)), 3) for name, args in commands.items()}


def predict_latency(root: Path, run: Path, runs: int) -> dict:
    from mmcli.workflows.predict import Predictor

    predictor = Predictor(run)
    shapes = root / "shapes"
    row = {"image": str(shapes / "images/00001.png"), "audio": str(shapes / "audio/00001.wav"),
           "video": str(shapes / "video/00001.mp4"), "text": "it looks crimson"}
    out = {}
    for size in (1, 64):
        predictor.predict([row] * size, base_dir="/")  # warm
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            predictor.predict([row] * size, base_dir="/")
            times.append(time.perf_counter() - start)
        out[f"batch_{size}_ms_per_row"] = round(1000 * statistics.median(times) / size, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        cli(["datasets", "make", "shapes", str(root / "shapes"), "--size", str(args.rows), "--quiet"], root)
        memory = {}
        recipe = str(REPO / "recipes" / "quickstart.yaml")
        common = [f"data.manifest={root / 'shapes' / 'manifest.csv'}", f"output_dir={root / 'runs'}",
                  f"data.cache_dir={root / 'cache'}"]
        memory["preprocess"] = round(cli(["preprocess", recipe, *common, "--quiet"], root)[1], 1)
        memory["finetune"] = round(cli(["finetune", recipe, *common, "training.epochs=2", "--quiet"], root)[1], 1)
        run = root / "runs" / "quickstart"
        memory["evaluate"] = round(cli(["evaluate", str(run), "--quiet"], root)[1], 1)
        memory["predict"] = round(cli(["predict", str(run), "--image", str(root / "shapes/images/00001.png"),
                                       "--quiet"], root)[1], 1)
        result = {"benchmark": "stages", "rows": args.rows, "runs": args.runs,
                  "preprocessing": preprocessing(root, args.rows, args.runs),
                  "cold_start_s": cold_start(root, run, args.runs),
                  "predict": predict_latency(root, run, args.runs),
                  "peak_memory_mb": memory}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
