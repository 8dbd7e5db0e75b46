"""Every speed benchmark at a size that fits ten minutes on a 2-core machine (``make bench``): each in its
own process, one after another (never two at once: they would time each other), their JSON objects
gathered into one, printed and written to ``benchmarks/results/bench.json``. Figures are for the machine
it runs on; read them on an idle one.

Usage: python benchmarks/run_all.py [--only NAME ...] [--threads N] [-o benchmarks/results/bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def suite(threads: int | None) -> dict[str, list[str]]:
    thread_args = ["--threads", str(threads)] if threads else []
    return {
        "cli_startup": ["cli_startup.py", "--runs", "5"],
        "stages": ["stages.py", "--rows", "1000", "--runs", "2"],
        "training_throughput": ["training_throughput.py", "--epochs", "2", "--repeats", "3", *thread_args,
                                "--set", "data.manifest=data/shapes/manifest.csv"],
        "end_to_end": ["end_to_end.py", "--rows", "1000", "--epochs", "5", *thread_args],
        "streaming_memory": ["streaming_memory.py", "--rows", "300", "--steps", "60"],
        "serve_load": ["serve_load.py", "--requests", "200"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="run these benchmarks only")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of both sides where it matters")
    parser.add_argument("-o", "--output", default=str(HERE / "results" / "bench.json"))
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    results: dict[str, object] = {}
    for name, command in suite(args.threads).items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]], cwd=HERE.parent, env=env,
                              capture_output=True, text=True, check=False)
        seconds = round(time.perf_counter() - start, 1)
        try:
            results[name] = json.loads(done.stdout) | {"benchmark_wall_s": seconds}
        except json.JSONDecodeError:
            results[name] = {"failed": done.returncode, "stderr": done.stderr[-1500:], "benchmark_wall_s": seconds}
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    report = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "load_average_at_end": os.getloadavg(), "results": results}
    text = json.dumps(report, indent=2)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text + "\n")
    print(text)
    if any("failed" in result for result in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
