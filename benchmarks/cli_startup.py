"""How long `mmcli --help` and `mmcli COMMAND --help` take (median of N runs), as JSON.

Usage: python benchmarks/cli_startup.py [--runs 7]
The target is under 0.5 s each; the machine is shared and noisy, so read the median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["finetune", "--help"], ["evaluate", "--help"], ["recipes", "ls", "--help"]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = {}
    for command in COMMANDS:
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "mmcli", *command], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        results[" ".join(command)] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    print(json.dumps({"benchmark": "cli_startup", "runs": args.runs, "target_s": 0.5, "results": results}, indent=2))


if __name__ == "__main__":
    main()
