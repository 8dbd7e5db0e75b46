"""training.trackers: CSV, TensorBoard and MLflow (a local file store) write a run's numbers into its
run directory, offline; run.log keeps what the console showed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmcli.data.synthetic import make_dataset
from mmcli.recipe.loader import load_recipe

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")


def test_csv_tensorboard_and_mlflow_get_every_epoch(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mmcli.workflows.finetune import finetune

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    make_dataset("shapes", tmp_path / "data", size=40, seed=3)
    recipe = load_recipe(QUICKSTART, [f"data.manifest={tmp_path / 'data' / 'manifest.csv'}", f"data.cache_dir={tmp_path / 'c'}",
                                      f"output_dir={tmp_path / 'runs'}", "training.epochs=2", "training.batch_size=8",
                                      "training.trackers=[csv, tensorboard, mlflow]"])
    run_dir = Path(finetune(recipe, show_progress=False)["run_dir"])

    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    losses = [row for row in rows if row["name"] == "train_loss"]
    assert len(losses) == 2 and all(float(row["value"]) > 0 for row in losses)
    assert any(row["name"] == "validation/scene/accuracy" for row in rows)
    assert any(row["name"].startswith("train_losses/") for row in rows)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((run_dir / "tensorboard").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert len(events.Scalars("train_loss")) == 2 and "validation/scene/accuracy" in events.Tags()["scalars"]

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name(recipe.name)
    [tracked] = client.search_runs([experiment.experiment_id])
    assert len(client.get_metric_history(tracked.info.run_id, "train_loss")) == 2
    assert tracked.data.params["training.batch_size"] == "8"

    log = (run_dir / "run.log").read_text()
    assert "preprocess:" in log and log.count(" epoch ") == 3 and "done: best" in log and "test:" in log  # two epochs + "over 2 epochs"


def test_a_tracker_without_its_package_is_one_recipe_error(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    from mmcli.errors import RecipeError
    from mmcli.training.callbacks.trackers import build_trackers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(RecipeError, match="'wandb' needs the wandb package"):
        build_trackers(["wandb"], tmp_path, "x")
