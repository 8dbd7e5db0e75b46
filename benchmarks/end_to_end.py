"""The quickstart end to end (preprocess + train + evaluate: what a user waits for) with mmcli against the
same work written by hand (benchmarks/bare_quickstart.py: a plain decoding loop, the same model, a plain
training loop, one process), alternating, as JSON: wall seconds of each, their ratio (the target is at most
1.2), the test scene accuracy of both, and where each one's time went (phases: decoding / preprocessing,
training, and the rest: start-up, evaluation, plots and files). mmcli's figure is ``mmcli run`` (one process, the README's
command); with ``--separate`` also ``preprocess``, ``finetune`` and ``evaluate`` as three processes, each
paying its own start-up.

Usage: python benchmarks/end_to_end.py [--rows 2000] [--epochs 20] [--repeats 1] [--threads N] [--separate]
       [-o results.json]
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
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--separate", action="store_true", help="also time the three commands one by one")
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    threads = [f"training.num_threads={args.threads}"] if args.threads else []
    mine, bare, separate, accuracy = [], [], [], {}
    phases: dict[str, list[dict[str, float]]] = {"bare": [], "mmcli": []}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        timed([sys.executable, "-m", "mmcli", "datasets", "make", "shapes", "data", "--size", str(args.rows), "--quiet"], root)
        for repeat in range(args.repeats):
            seconds, out = timed([sys.executable, str(REPO / "benchmarks" / "bare_quickstart.py"), "data/manifest.csv",
                                  "--epochs", str(args.epochs)] + (["--threads", str(args.threads)] if args.threads else []),
                                 root)
            bare.append(seconds)
            report = json.loads(out)
            accuracy["bare"] = report["scene_accuracy"]
            phases["bare"].append({"decode": report["decode_s"], "train": report["train_s"],
                                   "rest": round(seconds - report["decode_s"] - report["train_s"], 2)})
            mmcli = [sys.executable, "-m", "mmcli"]
            common = ["data.manifest=data/manifest.csv", f"data.cache_dir=cache-{repeat}", f"training.epochs={args.epochs}",
                      "training.early_stopping_patience=null", *threads]
            seconds, out = timed([*mmcli, "run", str(REPO / "recipes" / "quickstart.yaml"), *common,
                                  f"output_dir=runs-{repeat}", "--json", "--quiet"], root)
            mine.append(seconds)
            report = json.loads(out)
            steps = sum(json.loads(line)["seconds"] for line in
                        (root / f"runs-{repeat}" / "quickstart" / "history.jsonl").read_text().splitlines())
            training = report["metrics"]["training"]["seconds"]
            phases["mmcli"].append({"preprocess": report["preprocess"]["seconds"], "train": training,
                                    "train_steps": round(steps, 2),
                                    "rest": round(seconds - report["preprocess"]["seconds"] - training, 2)})
            _, out = timed([*mmcli, "evaluate", f"runs-{repeat}/quickstart", "--split", "test", "--json", "--quiet"], root)
            accuracy["mmcli"] = json.loads(out)["metrics"]["scene"]["accuracy"]
            if args.separate:
                common[1] = f"data.cache_dir=cache-separate-{repeat}"
                start = time.perf_counter()
                timed([*mmcli, "preprocess", str(REPO / "recipes" / "quickstart.yaml"), *common, "--quiet"], root)
                timed([*mmcli, "finetune", str(REPO / "recipes" / "quickstart.yaml"), *common, "evaluation.splits=[]",
                       f"output_dir=separate-{repeat}", "--quiet"], root)
                timed([*mmcli, "evaluate", f"separate-{repeat}/quickstart", "--split", "test", "--json", "--quiet"], root)
                separate.append(time.perf_counter() - start)
            print(json.dumps({"repeat": repeat, "bare_s": bare[-1], "mmcli_s": mine[-1]}), file=sys.stderr, flush=True)
    result = {"benchmark": "end_to_end", "rows": args.rows, "epochs": args.epochs, "seconds": {"bare": bare, "mmcli": mine},
              "ratio_of_medians": round(statistics.median(mine) / statistics.median(bare), 3), "target": 1.2,
              "test_scene_accuracy": accuracy, "phases_s": phases}
    if separate:
        result["seconds"]["mmcli_three_processes"] = separate
        result["ratio_three_processes"] = round(statistics.median(separate) / statistics.median(bare), 3)
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
