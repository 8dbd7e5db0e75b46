"""The two-stage language-model recipe (recipes/vlm.yaml: stage 1 captions with a language model built
from a config, stage 2 trains LoRA adapters on conversations), shrunk: SIGKILLed twice during stage 2,
each time once a stage-2 checkpoint has been written (mid-epoch, then in a later epoch), and continued
with ``mmcli run --resume``; the result equals an uninterrupted run's bit for bit: the final and best
weights (the adapters and what else trains), the optimizer state, metrics and history, and the finished
stage 1 is left as it was."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_fault_injection import kill_when, newest_step, resumed_to, stray

pytestmark = pytest.mark.slow
# 96 train rows in batches of 16: stage 1 trains 6 steps, stage 2 18 steps (6 an epoch) with a checkpoint
# every 2. One CPU thread: unset, torch's thread count is chosen from the machine's load when a run starts,
# and another count rounds sums differently, so the reference run and the killed one could differ.
SHRUNK = ["training.epochs=3", "training.batch_size=16", "training.checkpoint_every=2", "training.num_threads=1",
          "pretrain.training.epochs=1", "pretrain.training.batch_size=16"]
KILL_AT_STEPS = (4, 10)  # stage 2: mid-epoch 1; mid-epoch 2 (after an epoch end, its evaluation and checkpoint)


def _run(name: str, *extra: str, cwd: Path) -> dict:
    result = run_cli("run", "recipes/vlm.yaml", *SHRUNK, f"name={name}", *extra, "--json", cwd=cwd)
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.json()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _comparable(run_dir: Path) -> dict:
    from mmcli.training.run_state import without_timing

    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics.pop("training")
    final = run_dir / "checkpoints" / f"step-{newest_step(run_dir)}"
    return {"final weights": _digest(final / "model.safetensors"), "optimizer": _digest(final / "optimizer.safetensors"),
            "best weights": _digest(run_dir / "checkpoints/best/model.safetensors"),
            "metrics": metrics, "steps": (training["steps"], training["best_epoch"], training["epochs"]),
            "history": without_timing([json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()])}


def test_sigkill_during_stage_two_then_resume_is_bit_identical(small_workspace: Path) -> None:
    from safetensors.torch import load_file

    runs = small_workspace / "runs"
    _run("vlm-straight", cwd=small_workspace)
    reference, reference_stage1 = _comparable(runs / "vlm-straight"), _comparable(runs / "vlm-straight-pretrain")
    assert reference["steps"][0] == 18 and newest_step(runs / "vlm-straight") == 18
    saved = load_file(runs / "vlm-straight/checkpoints/step-18/model.safetensors")
    assert any(".lora_A." in key for key in saved), "stage 2 must train LoRA adapters"

    name = "vlm-killed"
    for index, step in enumerate(KILL_AT_STEPS):
        kill_when(["run", "recipes/vlm.yaml", *SHRUNK, f"name={name}", *(["--resume"] if index else []), "--quiet"],
                  small_workspace, resumed_to(runs / name, step))
        assert (runs / f"{name}-pretrain" / "metrics.json").is_file(), "killed in stage 2: stage 1 had finished"
        assert not (runs / name / "metrics.json").exists()
    left_at = newest_step(runs / name)
    resumed = _run(name, "--resume", cwd=small_workspace)
    assert resumed["metrics"]["training"]["resumed_from"].endswith(f"step-{left_at}"), "it must resume, not restart"

    killed = _comparable(runs / name)
    for key in reference:  # one at a time: a difference names the part that differs
        assert killed[key] == reference[key], f"{key} differ after the kills and the resume"
    assert _comparable(runs / f"{name}-pretrain") == reference_stage1, "the finished stage 1 changed"
    assert not stray(runs), stray(runs)
