"""training.trackers: CSV, TensorBoard and MLflow (a SQLite database) write a run's numbers into its
run directory, offline, and TensorBoard and MLflow also get the final metrics and the plots; run.log
keeps what the console showed."""

from __future__ import annotations

import csv
import json
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
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # as MLflow 3 has it: no file store ./mlruns
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

    metrics = json.loads((run_dir / "metrics.json").read_text())
    test_accuracy = metrics["test"]["scene"]["accuracy"]
    plots = sorted(path.stem for path in (run_dir / "plots").glob("*.png"))
    assert "learning-curves" in plots and len(plots) >= 3

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Scalars("train_loss")) == 2 and "validation/scene/accuracy" in events.Tags()["scalars"]
    [final] = events.Scalars("final/test/scene/accuracy")
    assert final.value == pytest.approx(test_accuracy) and "final/validation/size/mae" in events.Tags()["scalars"]
    assert sorted(events.Tags()["images"]) == [f"plots/{stem}" for stem in plots]

    from mlflow.tracking import MlflowClient

    assert not (run_dir / "mlruns").exists() and (run_dir / "mlflow.db").is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(recipe.name)
    [tracked] = client.search_runs([experiment.experiment_id])
    assert tracked.info.run_id == metrics["training"]["mlflow_run_id"]
    assert len(client.get_metric_history(tracked.info.run_id, "train_loss")) == 2
    assert tracked.data.params["training.batch_size"] == "8"
    assert tracked.data.metrics["final/test/scene/accuracy"] == pytest.approx(test_accuracy)
    artifacts = {entry.path for entry in client.list_artifacts(tracked.info.run_id)}
    assert artifacts == {"metrics.json", "plots"}
    assert sorted(entry.path for entry in client.list_artifacts(tracked.info.run_id, "plots")) == \
        [f"plots/{stem}.png" for stem in plots]
    artifact_root = Path(tracked.info.artifact_uri.removeprefix("file://"))
    assert artifact_root.is_relative_to((run_dir / "mlartifacts").resolve())  # inside the run

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


def test_mlflow_uses_the_runs_sqlite_database_unless_a_tracking_uri_is_set(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    import importlib.util

    from mmcli.errors import RecipeError
    from mmcli.training.callbacks.trackers import build_trackers, mlflow_local_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_local_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert mlflow_local_uri(tmp_path) is None
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "alembic" else real(name, *a))
    with pytest.raises(RecipeError, match="SQLite database, which needs alembic"):
        build_trackers(["mlflow"], tmp_path, "x")
