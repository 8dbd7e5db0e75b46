"""SIGKILL at chosen points, one after another, during finetune, pretrain and preprocess; then run
again: no traceback, no earlier result lost, no stray temporary folder, no orphan worker, and the results
of the interrupted-then-resumed work equal an uninterrupted run's. Each kill waits for an observable
point of the work (a file written, a checkpoint saved, workers started), never for a time, so the
phases covered do not depend on the machine's speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
TRAINING = ["training.epochs=3", "training.batch_size=16", "training.checkpoint_every=2"]
PRETRAINING = ["pretrain.training.epochs=2", "pretrain.training.batch_size=16", "pretrain.training.checkpoint_every=2",
               "data.train_fraction=0.5"]
# Where trainings are killed: data cached and recipe written (step 0, before the first step), after a
# mid-epoch checkpoint, after the first epoch's, and in the second epoch. The small workspace has 96 train
# rows: 6 steps an epoch in batches of 16, so finetune trains 18 steps and pretrain 12.
KILL_AT_STEPS = (0, 2, 6, 8)
LEFT_BY_A_KILL = "left-by-a-kill"  # marks a staging folder an earlier kill left


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


def kill_when(args: list[str], cwd: Path, reached: Callable[[int], bool]) -> list[int]:
    """Start ``mmcli ARGS``, SIGKILL it as soon as ``reached(pid)`` holds; the pids of its workers then."""
    process = subprocess.Popen([sys.executable, "-m", "mmcli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 600
    while not reached(process.pid):
        assert process.poll() is None, f"mmcli {args[0]} ended before the point it was to be killed at"
        assert time.monotonic() < deadline, f"mmcli {args[0]} never reached the point it was to be killed at"
        time.sleep(0.005)
    workers = _children(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return workers


def newest_step(run_dir: Path) -> int:
    """The step of ``run_dir``'s newest complete checkpoint (0 without one)."""
    steps = [int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step-*")
             if p.name[5:].isdigit() and (p / "trainer_state.json").is_file()]
    return max(steps, default=0)


def resumed_to(run_dir: Path, step: int) -> Callable[[int], bool]:
    """The training of ``run_dir`` has written its recipe and, for ``step`` > 0, saved a checkpoint at
    ``step`` or later that was not there when it started (so a resumed run has trained further)."""
    before = newest_step(run_dir)

    def reached(pid: int) -> bool:
        newest = newest_step(run_dir)
        return (run_dir / "recipe.yaml").is_file() and (step == 0 or newest > before and newest >= step)

    return reached


def replacing_to(staging: Path, step: int) -> Callable[[int], bool]:
    """A replacing run, training in ``staging`` from scratch, has written its recipe and checkpointed
    ``step``; a staging folder an earlier kill left is marked first, so that only the new one counts
    (the next command deletes it and trains in a new one)."""
    if staging.is_dir():
        (staging / LEFT_BY_A_KILL).touch()
    return lambda pid: (staging / "recipe.yaml").is_file() and not (staging / LEFT_BY_A_KILL).exists() \
        and newest_step(staging) >= step


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


def finished(args: list[str], cwd: Path) -> None:
    result = run_cli(*args, "--quiet", cwd=cwd)
    assert result.code == 0, result.stderr[-2000:]


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_killed_training_then_resume_equals_an_uninterrupted_run(small_workspace, command):
    recipe, settings = ("recipes/quickstart.yaml", TRAINING) if command == "finetune" else \
        ("recipes/pretrain-then-finetune.yaml", PRETRAINING)
    suffix = "-pretrain" if command == "pretrain" else ""
    runs = small_workspace / "runs"
    earlier = f"earlier-{command}"
    finished([command, recipe, *settings, f"name={earlier}"], small_workspace)
    before = snapshot(runs / f"{earlier}{suffix}")
    reference = f"straight-{command}"
    finished([command, recipe, *settings, f"name={reference}"], small_workspace)
    name = f"killed-{command}"
    for index, step in enumerate(KILL_AT_STEPS):
        kill_when([command, recipe, *settings, f"name={name}", *(["--resume"] if index else [])], small_workspace,
                  resumed_to(runs / f"{name}{suffix}", step))
        # and an earlier run, asked to be replaced, killed too (it trains in a staging folder): it stays as it was
        kill_when([command, recipe, *settings, f"name={earlier}", "--overwrite"], small_workspace,
                  replacing_to(runs / f".{earlier}{suffix}.partial", step))
    result = run_cli(command, recipe, *settings, f"name={name}", "--resume", "--json", cwd=small_workspace)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert comparable(runs / f"{name}{suffix}") == comparable(runs / f"{reference}{suffix}")
    refused = run_cli(command, recipe, *settings, f"name={earlier}", cwd=small_workspace)
    assert refused.code == 2 and "Traceback" not in refused.stderr  # it is still there, finished
    assert snapshot(runs / f"{earlier}{suffix}") == before, "an earlier run changed"
    assert not stray(runs), stray(runs)


def decoding_reached(cache: Path, point: str) -> Callable[[int], bool]:
    """A preprocess into ``cache`` has made its own decoding folder (not one an earlier kill left), started
    its decoding workers, or written decoded rows."""
    before = set(cache.glob(".*.work.*"))

    def reached(pid: int) -> bool:
        fresh = [folder for folder in cache.glob(".*.work.*") if folder not in before]
        if point == "decoding folder made" or not fresh:
            return bool(fresh)
        if point == "workers started":
            return bool(_children(pid))
        try:
            return any(path.stat().st_size > 0 for folder in fresh for path in folder.glob("decoded-*.arrow"))
        except OSError:  # the folder went away: the command finished (kill_when then says so)
            return False

    return reached


def test_killed_preprocess_leaves_nothing_half_done_and_no_orphan(small_workspace):
    # more rows than one decoding chunk (128), so that preprocess starts its workers
    made = run_cli("datasets", "make", "shapes", "data/shapes-faults", "--size", "400", "--seed", "2", cwd=small_workspace)
    assert made.code == 0, made.stderr[-2000:]
    manifest = "data.manifest=data/shapes-faults/manifest.csv"
    args = ["preprocess", "recipes/quickstart.yaml", manifest, "data.cache_dir=cache-faults", "--num-proc", "2"]
    cache = small_workspace / "cache-faults"
    for point in ("decoding folder made", "workers started", "rows decoded"):
        workers = kill_when(args, small_workspace, decoding_reached(cache, point))
        assert workers or point == "decoding folder made", f"no decoding worker when {point}"
        deadline = time.monotonic() + 10
        while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [worker for worker in workers if _alive(worker)], "a decoding worker outlived its parent"
    result = run_cli(*args, "--json", cwd=small_workspace)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    fresh = run_cli("preprocess", "recipes/quickstart.yaml", manifest, "data.cache_dir=cache-clean", "--json",
                    cwd=small_workspace)
    killed, clean = result.json(), fresh.json()
    assert (killed["key"], killed["rows"], killed["kept"], killed["splits"]) == \
        (clean["key"], clean["rows"], clean["kept"], clean["splits"])
    assert (Path(small_workspace / killed["cache"]) / "preprocessing.json").read_bytes() == \
        (Path(small_workspace / clean["cache"]) / "preprocessing.json").read_bytes()
    assert not stray(small_workspace / "cache-faults"), stray(small_workspace / "cache-faults")
