"""Crash safety: exact resume after SIGKILL, the run-directory lock, refusing planted pickles."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow  # several trainings each, killed and resumed
RESUMABLE = ["training.epochs=3", "training.batch_size=16", "training.checkpoint_every=2", "training.keep_checkpoints=2"]


def _comparable(run_dir: Path) -> tuple[bytes, dict, list]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics.pop("training")
    metrics["steps"], metrics["best_epoch"] = training["steps"], training["best_epoch"]
    from mmcli.training.run_state import without_timing

    history = without_timing([json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()])
    return (run_dir / "checkpoints/best/model.safetensors").read_bytes(), metrics, history


def _start(workspace: Path, name: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "mmcli", "finetune", "recipes/quickstart.yaml", *RESUMABLE, f"name={name}", "--quiet"]
    return subprocess.Popen(args, cwd=workspace, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_after_step(process: subprocess.Popen, checkpoints: Path, step: int, timeout: float = 300) -> None:
    """SIGKILL as soon as checkpoint step-N appears: mid-training, often mid-save of the next one."""
    deadline = time.monotonic() + timeout
    while not (checkpoints / f"step-{step}").exists():
        assert process.poll() is None, f"finished before step {step}: {process.stderr.read().decode()[-1500:]}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def uninterrupted(small_workspace):
    result = run_cli("finetune", "recipes/quickstart.yaml", *RESUMABLE, "name=straight", "--quiet", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    return _comparable(small_workspace / "runs" / "straight")


def test_sigkill_at_random_steps_then_resume_is_identical(small_workspace, uninterrupted):
    steps = json.loads(_last_line(small_workspace / "runs" / "straight" / "history.jsonl"))["step"]
    kill_points = sorted(random.Random(7).sample(range(2, steps, 2), 2))
    name = "killed"
    for point in kill_points:  # killed twice, resumed after each kill
        process = _start(small_workspace, name) if point == kill_points[0] else _resume_process(small_workspace, name)
        _kill_after_step(process, small_workspace / "runs" / name / "checkpoints", point)
    result = run_cli("finetune", "recipes/quickstart.yaml", *RESUMABLE, f"name={name}", "--resume", "--json",
                     cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    assert result.json()["metrics"]["training"]["resumed_from"], "it must have resumed, not restarted"
    weights, metrics, history = _comparable(small_workspace / "runs" / name)
    assert metrics == uninterrupted[1]
    assert history == uninterrupted[2]
    assert weights == uninterrupted[0]
    kept = sorted((small_workspace / "runs" / name / "checkpoints").glob("step-*"))
    assert len(kept) == 2, "keep_checkpoints=2"


def _resume_process(workspace: Path, name: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "mmcli", "finetune", "recipes/quickstart.yaml", *RESUMABLE, f"name={name}", "--resume", "--quiet"]
    return subprocess.Popen(args, cwd=workspace, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _last_line(path: Path) -> str:
    return path.read_text().strip().splitlines()[-1]


def test_a_killed_save_leaves_the_previous_checkpoint_loadable(small_workspace, uninterrupted):
    from mmcli.training.checkpoints import list_checkpoints

    folder = small_workspace / "runs" / "straight" / "checkpoints"
    newest = list_checkpoints(folder)[-1]
    # what a kill during a save leaves: a half-written staging folder next to the complete ones
    staging = folder / f".step-{int(newest.name.split('-')[1]) + 2}.abc"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"\x00" * 10)
    assert list_checkpoints(folder)[-1] == newest
    result = run_cli("finetune", "recipes/quickstart.yaml", *RESUMABLE, "name=straight", "--resume", "--json",
                     cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    assert result.json()["metrics"]["training"]["resumed_from"].endswith(newest.name)


def test_second_writer_is_refused_and_a_dead_holders_lock_file_is_no_lock(small_workspace, uninterrupted):
    run_dir = small_workspace / "runs" / "straight"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time, pathlib\nfrom mmcli.run_lock import run_lock\n"
        f"with run_lock(pathlib.Path({str(run_dir)!r}), 'finetune'):\n    print('held', flush=True)\n    time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli("evaluate", str(run_dir), "--split", "test", cwd=small_workspace)
        assert result.code == 2
        assert f"in use by process {holder.pid}" in result.stderr and "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()
    # what a SIGKILLed holder leaves is a file, not a lock: the kernel released it with the process
    lock = run_dir.parent / f".{run_dir.name}.lock"
    assert lock.is_file()
    result = run_cli("evaluate", str(run_dir), "--split", "test", "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_is_never_loaded(small_workspace, uninterrupted, tmp_path):
    import shutil

    run_dir = small_workspace / "runs" / "pickled"
    shutil.copytree(small_workspace / "runs" / "straight", run_dir)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    (run_dir / "checkpoints/best/model.safetensors").write_bytes(payload)
    (run_dir / "checkpoints/best/pytorch_model.bin").write_bytes(payload)
    result = run_cli("evaluate", str(run_dir), "--split", "test", cwd=small_workspace)
    assert result.code == 2
    assert "not a safetensors file" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists(), "the pickle ran"
    lines = [line for p in Path(__file__).resolve().parents[2].joinpath("mmcli").rglob("*.py") for line in p.read_text().splitlines()]
    assert not [line for line in lines if "pickle.load" in line]
    assert all("weights_only=True" in line for line in lines if "torch.load(" in line)
