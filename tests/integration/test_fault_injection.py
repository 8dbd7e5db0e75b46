"""SIGKILL at random points, many times, during finetune, pretrain and preprocess; then run again: no
traceback, no earlier result lost, no stray temporary folder, no orphan worker, and the results of the
interrupted-then-resumed work equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
KILLS = 4
TRAINING = ["training.epochs=3", "training.batch_size=16", "training.checkpoint_every=2"]
PRETRAINING = ["pretrain.training.epochs=2", "pretrain.training.batch_size=16", "pretrain.training.checkpoint_every=2",
               "data.train_fraction=0.5"]


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie waiting for its reaper is dead
        return handle.read().split()[2] != "Z"


def kill_after(args: list[str], cwd: Path, delay: float) -> list[int]:
    """Start ``mmcli ARGS``, SIGKILL it after ``delay`` seconds; the pids of the workers it had then."""
    process = subprocess.Popen([sys.executable, "-m", "mmcli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    time.sleep(delay)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return workers


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stray(root: Path) -> list[str]:
    """Hidden staging, pruned or decoding folders left anywhere below ``root``."""
    return [str(p) for p in root.rglob(".*") if p.is_dir() and any(tag in p.name for tag in (".partial", ".replaced",
                                                                                            ".work.", ".step-", ".pruned-"))]


def comparable(run_dir: Path) -> tuple:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics.pop("training")
    return ((run_dir / "checkpoints/best/model.safetensors").read_bytes(), metrics,
            _history(run_dir), training["steps"], training["best_epoch"])


def _history(run_dir: Path) -> list[dict]:
    from mmcli.training.run_state import without_timing

    return without_timing([json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()])


def timed(args: list[str], cwd: Path) -> float:
    start = time.monotonic()
    result = run_cli(*args, "--quiet", cwd=cwd)
    assert result.code == 0, result.stderr[-2000:]
    return time.monotonic() - start


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_killed_training_then_resume_equals_an_uninterrupted_run(small_workspace, command):
    recipe, settings = ("recipes/quickstart.yaml", TRAINING) if command == "finetune" else \
        ("recipes/pretrain-then-finetune.yaml", PRETRAINING)
    suffix = "-pretrain" if command == "pretrain" else ""
    runs = small_workspace / "runs"
    earlier = f"earlier-{command}"
    seconds = timed([command, recipe, *settings, f"name={earlier}"], small_workspace)
    before = snapshot(runs / f"{earlier}{suffix}")
    reference = f"straight-{command}"
    timed([command, recipe, *settings, f"name={reference}"], small_workspace)
    name = f"killed-{command}"
    delays = sorted(random.Random(11).uniform(0.5, max(seconds, 2.0)) for _ in range(KILLS))
    for index, delay in enumerate(delays):
        kill_after([command, recipe, *settings, f"name={name}", *(["--resume"] if index else [])], small_workspace, delay)
        # and an earlier run, asked to be replaced, killed too: it stays as it was
        kill_after([command, recipe, *settings, f"name={earlier}", "--overwrite"], small_workspace, delay)
    result = run_cli(command, recipe, *settings, f"name={name}", "--resume", "--json", cwd=small_workspace)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert comparable(runs / f"{name}{suffix}") == comparable(runs / f"{reference}{suffix}")
    refused = run_cli(command, recipe, *settings, f"name={earlier}", cwd=small_workspace)
    assert refused.code == 2 and "Traceback" not in refused.stderr  # it is still there, finished
    assert snapshot(runs / f"{earlier}{suffix}") == before, "an earlier run changed"
    assert not stray(runs), stray(runs)


def test_killed_preprocess_leaves_nothing_half_done_and_no_orphan(small_workspace):
    args = ["preprocess", "recipes/quickstart.yaml", "data.cache_dir=cache-faults", "--num-proc", "2"]
    for delay in sorted(random.Random(5).uniform(1.0, 6.0) for _ in range(KILLS)):
        workers = kill_after(args, small_workspace, delay)
        deadline = time.monotonic() + 10
        while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [worker for worker in workers if _alive(worker)], "a decoding worker outlived its parent"
    result = run_cli(*args, "--json", cwd=small_workspace)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    fresh = run_cli("preprocess", "recipes/quickstart.yaml", "data.cache_dir=cache-clean", "--json", cwd=small_workspace)
    killed, clean = result.json(), fresh.json()
    assert (killed["key"], killed["rows"], killed["kept"], killed["splits"]) == \
        (clean["key"], clean["rows"], clean["kept"], clean["splits"])
    assert (Path(small_workspace / killed["cache"]) / "preprocessing.json").read_bytes() == \
        (Path(small_workspace / clean["cache"]) / "preprocessing.json").read_bytes()
    assert not stray(small_workspace / "cache-faults"), stray(small_workspace / "cache-faults")
