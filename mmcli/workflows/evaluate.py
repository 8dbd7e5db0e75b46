"""evaluate: per-task metrics of a trained run on any split, through the bundled metric modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcli.run_lock import run_lock
from mmcli.runs import METRICS_FILE, atomic_write_json, read_json


def evaluate_run(run_dir: str | Path, split: str = "test", num_proc: int = 1, quiet: bool = True) -> dict[str, Any]:
    from mmcli.evaluation.predictions import evaluate_splits
    from mmcli.workflows.run_dir import open_run, split_dataset

    run = open_run(run_dir)
    dataset = split_dataset(run, split, num_proc, quiet)
    metrics = evaluate_splits(run.model, run.recipe, {split: dataset}, [split])
    with run_lock(run.run_dir, "evaluate"):
        path = run.run_dir / METRICS_FILE
        stored = read_json(path) if path.is_file() else {}
        stored[split] = metrics[split]
        atomic_write_json(path, stored)
    return {"run_dir": str(run.run_dir), "split": split, "metrics": metrics[split]}
