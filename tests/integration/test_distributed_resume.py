"""Two processes launched by `--num-processes 2` (torchrun, gloo), stopped twice and resumed: first by
SIGTERM (every process stops after the same step with one checkpoint), then by SIGKILL of every process
(the newest checkpoint is all that is left). The resumed run's history and weights equal those of an
uninterrupted 2-process run: every rank restores its own RNG states (modality dropout draws a different
number of random values on each rank, so the ranks' generators differ)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
SETTINGS = ["training.epochs=3", "training.batch_size=16", "training.checkpoint_every=2", "training.keep_checkpoints=2",
            "training.modality_dropout=0.6", "--num-processes", "2"]


def _comparable(run_dir: Path) -> tuple[bytes, dict, list]:
    from mmcli.training.run_state import without_timing

    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics.pop("training")
    metrics["steps"], metrics["best_epoch"] = training["steps"], training["best_epoch"]
    history = without_timing([json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()])
    return (run_dir / "checkpoints/best/model.safetensors").read_bytes(), metrics, history


def _start(workspace: Path, name: str, log: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "mmcli", "finetune", "recipes/quickstart.yaml", *SETTINGS, f"name={name}", "--quiet",
            *(["--resume"] if resume else [])]
    return subprocess.Popen(args, cwd=workspace, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"))


def _wait_for(process: subprocess.Popen, path: Path, log: Path, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"finished before {path.name}: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.02)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _steps(run_dir: Path) -> list[int]:
    return sorted(int(path.name.split("-")[1]) for path in (run_dir / "checkpoints").glob("step-*"))


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the worker processes through /proc")
def test_two_processes_stopped_and_killed_then_resumed_continue_exactly(small_workspace, tmp_path):
    straight = run_cli("finetune", "recipes/quickstart.yaml", *SETTINGS, "name=dp-straight", "--json", cwd=small_workspace)
    assert straight.code == 0, straight.stderr[-3000:]
    assert straight.json()["metrics"]["training"]["processes"] == 2
    expected = _comparable(small_workspace / "runs" / "dp-straight")

    name, log = "dp-killed", tmp_path / "stderr.log"
    run_dir = small_workspace / "runs" / name
    first = _start(small_workspace, name, log, resume=False)
    _wait_for(first, run_dir / "checkpoints" / "step-4", log)
    first.send_signal(signal.SIGTERM)  # to the launcher, which forwards it to torchrun and the processes
    assert first.wait(timeout=300) == 143, log.read_text()[-3000:]
    stopped_at = _steps(run_dir)[-1]
    assert stopped_at >= 4 and (run_dir / "checkpoints" / f"step-{stopped_at}" / "rng-rank-1.safetensors").is_file()

    second = _start(small_workspace, name, log, resume=True)
    kill_at = stopped_at + 4 + stopped_at % 2  # an even step, checkpointed after the resume
    _wait_for(second, run_dir / "checkpoints" / f"step-{kill_at}", log)
    for pid in [*_descendants(second.pid), second.pid]:  # the whole machine's worth of processes at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    second.wait(timeout=60)

    resumed = run_cli("finetune", "recipes/quickstart.yaml", *SETTINGS, f"name={name}", "--resume", "--json",
                      cwd=small_workspace)
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.json()["metrics"]["training"]["resumed_from"], "it must have resumed, not restarted"
    weights, metrics, history = _comparable(run_dir)
    assert history == expected[2]
    assert metrics == expected[1]
    assert weights == expected[0]


def test_fsdp_trains_like_ddp_and_resumes_exactly(small_workspace, tmp_path):
    """training.strategy: fsdp (torch FSDP2 over gloo on the CPU): the same global batches give the same
    training losses as DDP up to float summation order, and a run stopped by SIGTERM resumes from its
    gathered (whole-tensor) checkpoint exactly."""
    fsdp = [*SETTINGS, "training.strategy=fsdp", "training.epochs=2"]
    ddp = run_cli("finetune", "recipes/quickstart.yaml", *SETTINGS, "training.epochs=2", "name=fsdp-ddp", "--json",
                  cwd=small_workspace)
    straight = run_cli("finetune", "recipes/quickstart.yaml", *fsdp, "name=fsdp-straight", "--json", cwd=small_workspace)
    assert ddp.code == 0 and straight.code == 0, (ddp.stderr + straight.stderr)[-3000:]
    expected = _comparable(small_workspace / "runs" / "fsdp-straight")
    for one, two in zip(_comparable(small_workspace / "runs" / "fsdp-ddp")[2], expected[2]):
        # BatchNorm statistics: DDP takes rank 0's at every step, FSDP keeps each rank's (validation differs more)
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.01)
        assert two["validation_loss"] == pytest.approx(one["validation_loss"], rel=0.05)

    name, log = "fsdp-stopped", tmp_path / "stderr.log"
    process = subprocess.Popen([sys.executable, "-m", "mmcli", "finetune", "recipes/quickstart.yaml", *fsdp,
                                f"name={name}", "--quiet"], cwd=small_workspace, stdout=subprocess.DEVNULL,
                               stderr=log.open("ab"), env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _wait_for(process, small_workspace / "runs" / name / "checkpoints" / "step-4", log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 143, log.read_text()[-3000:]
    resumed = run_cli("finetune", "recipes/quickstart.yaml", *fsdp, f"name={name}", "--resume", "--json",
                      cwd=small_workspace)
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert resumed.json()["metrics"]["training"]["resumed_from"]
    weights, metrics, history = _comparable(small_workspace / "runs" / name)
    assert (history, metrics, weights) == (expected[2], expected[1], expected[0])
