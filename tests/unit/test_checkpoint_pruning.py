"""Full checkpoints: pruning renames before it deletes, and what a killed save or prune left behind
(a hidden staging folder, a half-deleted step-N) is cleaned at the next save."""

from __future__ import annotations

from pathlib import Path

import torch

from mmcli.training.checkpoints import RNG_FILE, STATE_FILE, list_checkpoints, save_training_state


def save(folder: Path, step: int, keep: int = 2) -> Path:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return save_training_state(folder, step, model, optimizer, scheduler, {"step": step}, keep)


def test_a_half_deleted_checkpoint_and_stale_staging_are_cleaned(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    save(folder, 3)
    half_deleted = folder / "step-5"  # what a SIGKILL during an older mmcli's rmtree left: only the RNG file
    half_deleted.mkdir()
    (half_deleted / RNG_FILE).write_bytes(b"\x00")
    staging = folder / ".step-7.abc123"  # a save killed before its rename
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"\x00")
    pruned = folder / ".pruned-step-1.xyz"  # a prune killed after its rename
    (pruned / "step-1").mkdir(parents=True)
    assert [p.name for p in list_checkpoints(folder)] == ["step-3"]  # incomplete folders never count
    save(folder, 9)
    assert sorted(p.name for p in folder.iterdir()) == ["step-3", "step-9"]


def test_pruning_keeps_the_newest_and_never_leaves_a_partial_step(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for step in (2, 4, 6, 8):
        save(folder, step)
        names = sorted(p.name for p in folder.iterdir())
        assert all((folder / name / STATE_FILE).is_file() for name in names), names
    assert [p.name for p in list_checkpoints(folder)] == ["step-6", "step-8"]
    assert sorted(p.name for p in folder.iterdir()) == ["step-6", "step-8"]
    save(folder, 8)  # the same step saved again replaces it whole
    assert [p.name for p in list_checkpoints(folder)] == ["step-6", "step-8"]


def test_files_and_checkpoints_respect_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    from mmcli.runs import atomic_write_json

    previous = os.umask(0o022)
    try:
        written = atomic_write_json(tmp_path / "metrics.json", {"a": 1})
        checkpoint = save(tmp_path / "checkpoints", 1)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o755
    assert stat.S_IMODE((checkpoint / "model.safetensors").stat().st_mode) == 0o644
