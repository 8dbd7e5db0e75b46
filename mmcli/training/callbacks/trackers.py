"""``training.trackers``: experiment trackers through accelerate's tracking API, all writing into the run
directory, offline: ``csv`` (``metrics.csv``: step, name, value), ``tensorboard`` (``tensorboard/``),
``mlflow`` (a local file store ``mlruns/``, or the server ``MLFLOW_TRACKING_URI`` names) and ``wandb``
(offline unless ``WANDB_MODE`` says otherwise, ``wandb/``). They get the resolved recipe as
parameters, the running training loss and learning rate at the trainer's log interval, and every
epoch's record (losses per objective, their weights, validation metrics)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from mmcli.errors import RecipeError
from mmcli.training.callbacks.base import Callback
from mmcli.training.run_state import LOG_EVERY

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def _csv_tracker(run_dir: Path) -> Any:
    from accelerate.tracking import GeneralTracker

    class CSVTracker(GeneralTracker):
        """Long format, so that objectives and metrics may come and go: one row per (step, name, value)."""

        name = "csv"
        requires_logging_directory = False

        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

        @property
        def tracker(self) -> Path:
            return self.path

        def store_init_configuration(self, values: dict) -> None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.is_file():  # a resumed run appends to what it logged before
                with open(self.path, "w", newline="", encoding="utf-8") as handle:
                    csv.writer(handle).writerow(["step", "name", "value"])

        def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                for name, value in values.items():
                    writer.writerow([step, name, value])

    return CSVTracker(run_dir / "metrics.csv")


def build_trackers(names: list[str], run_dir: Path, run_name: str) -> list[Any]:
    """accelerate tracker objects for ``training.trackers`` (a missing package: one recipe error)."""
    import importlib.util

    trackers = []
    for name in names:
        package = TRACKER_PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise RecipeError(f"training.trackers: '{name}' needs the {package} package",
                              hint=f"pip install {package} (or pip install 'mmcli[tracking]')")
        if name == "csv":
            trackers.append(_csv_tracker(run_dir))
        elif name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            trackers.append(TensorBoardTracker("tensorboard", run_dir))
        elif name == "mlflow":
            import mlflow
            from accelerate.tracking import MLflowTracker

            if not os.environ.get("MLFLOW_TRACKING_URI"):  # offline: a file store in the run directory
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this opt-in
                mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
            trackers.append(MLflowTracker(experiment_name=run_name, logging_dir=str(run_dir / "mlruns"), run_name=run_name))
        elif name == "wandb":
            from accelerate.tracking import WandBTracker

            os.environ.setdefault("WANDB_MODE", "offline")
            trackers.append(WandBTracker(run_name, dir=str(run_dir)))
    return trackers


def flatten(values: Any, prefix: str = "") -> dict[str, float]:
    """Nested numbers as ``a/b/c`` keys (trackers take flat scalars); other leaves left out."""
    flat: dict[str, float] = {}
    if isinstance(values, dict):
        for key, value in values.items():
            flat.update(flatten(value, f"{prefix}{key}/"))
    elif isinstance(values, (int, float)) and not isinstance(values, bool):
        flat[prefix.rstrip("/")] = float(values)
    return flat


class Trackers(Callback):
    def on_train_begin(self, run: Any) -> None:
        config = {key: (value if isinstance(value, (int, float, str, bool)) or value is None else str(value))
                  for key, value in flatten_config(run.recipe.model_dump(mode="json")).items()}
        run.accelerator.init_trackers(run.recipe.name, config=config)

    def on_step_end(self, run: Any) -> None:
        if run.state["step"] % LOG_EVERY == 0:  # the running loss is read (synced) at this interval anyway
            run.accelerator.log({"train/running_loss": run.shown_loss,
                                 "train/learning_rate": run.scheduler.get_last_lr()[0]}, step=run.state["step"])

    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        values = {key: value for key, value in record.items() if key not in ("step",)}
        run.accelerator.log(flatten(values), step=record["step"])

    def on_close(self, run: Any) -> None:
        run.accelerator.end_training()


def flatten_config(values: Any, prefix: str = "") -> dict[str, Any]:
    """A recipe as flat ``a.b.c`` parameters (lists as text)."""
    flat: dict[str, Any] = {}
    if isinstance(values, dict):
        for key, value in values.items():
            flat.update(flatten_config(value, f"{prefix}{key}."))
    else:
        flat[prefix.rstrip(".")] = values if not isinstance(values, list) else str(values)
    return flat
