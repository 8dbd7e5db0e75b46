"""Does training memory stay flat as the data grows? The quickstart trained for the same number of steps on a
shapes set of N rows and of 10 N rows, as JSON: the training process's peak anonymous memory (RssAnon, sampled
every 20 ms: the memory it needs; the memory-mapped cache's pages are the operating system's to drop) and its
peak resident set, their ratio 10x / 1x (the target is at most 1.3), and samples/s of both.

Usage: python benchmarks/streaming_memory.py [--rows 300] [--steps 60] [-o results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def anonymous_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measured(args: list[str], cwd: Path) -> dict:
    """Peak anonymous and resident memory of one mmcli command, in MB."""
    process = subprocess.Popen([sys.executable, "-m", "mmcli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], anonymous_mb(process.pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(process.pid, 0)
    watcher.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mmcli {' '.join(args)} failed: {process.stderr.read().decode()[-2000:]}")
    return {"peak_anonymous_mb": round(peak[0], 1), "peak_resident_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("-o", "--output")
    args = parser.parse_args()
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for scale in (1, 10):
            rows = args.rows * scale
            data = root / f"shapes-{scale}x"
            subprocess.run([sys.executable, "-m", "mmcli", "datasets", "make", "shapes", str(data), "--size", str(rows),
                            "--quiet"], check=True, cwd=root)
            common = [f"data.manifest={data / 'manifest.csv'}", f"output_dir={root / 'runs'}",
                      f"data.cache_dir={root / 'cache'}", f"name=x{scale}"]
            subprocess.run([sys.executable, "-m", "mmcli", "preprocess", recipe, *common, "--quiet"], check=True, cwd=root)
            figures = measured(["finetune", recipe, *common, f"training.max_steps={args.steps}", "training.epochs=100",
                                "evaluation.splits=[]", "--quiet"], root)
            history = [json.loads(line) for line in (root / "runs" / f"x{scale}" / "history.jsonl").read_text().splitlines()]
            figures["samples_per_s"] = history[-1]["samples_per_s"]
            figures["rows"] = rows
            out[f"{scale}x"] = figures
    result = {"benchmark": "streaming_memory", "steps": args.steps, **out,
              "anonymous_ratio_10x_over_1x": round(out["10x"]["peak_anonymous_mb"] / out["1x"]["peak_anonymous_mb"], 3),
              "resident_ratio_10x_over_1x": round(out["10x"]["peak_resident_mb"] / out["1x"]["peak_resident_mb"], 3),
              "target": 1.3}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
