"""mmcli serve under load on 127.0.0.1: requests/s and p50/p99 latency with one client and with many,
and how many rows each model call answered (micro-batching), as JSON.

It trains a short quickstart run on a generated shapes set in a temporary folder (or uses --run-dir),
starts `mmcli serve` in a subprocess and sends image + audio + text rows as base64 JSON.

Usage: python benchmarks/serve_load.py [--run-dir runs/quickstart] [--requests 300] [-o results.json]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from mmcli.serving.loadgen import load_test

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "mmcli", *args], cwd=cwd, check=True, capture_output=True)


def _payloads(data: Path, count: int = 16) -> list[dict]:
    def encoded(path: Path) -> dict:
        return {"base64": base64.b64encode(path.read_bytes()).decode()}

    return [{"image": encoded(data / "images" / f"{i:05d}.png"), "audio": encoded(data / "audio" / f"{i:05d}.wav"),
             "text": "it looks crimson"} for i in range(count)]


def measure(run_dir: Path, data: Path, requests: int, settings: list[tuple[int, int]]) -> list[dict]:
    results = []
    for concurrency, max_batch in settings:
        server = subprocess.Popen([sys.executable, "-m", "mmcli", "serve", str(run_dir), "--port", "0", "--json",
                                   "--max-batch", str(max_batch)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            url = next(json.loads(line)["url"] for line in server.stderr if line.startswith("{"))
            payloads = _payloads(data)
            load_test(url + "/predict", payloads, requests=2 * concurrency, concurrency=concurrency)  # warm-up
            stats = load_test(url + "/predict", payloads, requests=requests, concurrency=concurrency)
            with urllib.request.urlopen(url + "/health") as response:
                served = json.loads(response.read())["served"]
            stats |= {"max_batch": max_batch, "rows_per_model_call": served["rows"] / served["batches"]}
            results.append(stats)
            print(json.dumps(stats), file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=120)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--data", type=Path, help="the shapes folder of --run-dir (default data/shapes)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if args.run_dir is None:
            import shutil

            shutil.copytree(REPO / "recipes", work / "recipes")
            _cli("datasets", "make", "shapes", "data/shapes", "--size", "400", "--seed", "0", cwd=work)
            _cli("finetune", "recipes/quickstart.yaml", "training.epochs=2", "--json", cwd=work)
            run_dir, data = work / "runs" / "quickstart", work / "data" / "shapes"
        else:
            run_dir, data = args.run_dir.resolve(), (args.data or Path("data/shapes")).resolve()
        results = measure(run_dir, data, args.requests, [(1, 1), (1, 32), (16, 1), (16, 32)])
    report = {"benchmark": "serve_load", "requests": args.requests, "results": results}
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
