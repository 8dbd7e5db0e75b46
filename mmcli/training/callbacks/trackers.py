"""``training.trackers``: experiment trackers through accelerate's tracking API, all writing into the run
directory, offline: ``csv`` (``metrics.csv``: step, name, value), ``tensorboard`` (``tensorboard/``),
``mlflow`` (a SQLite database ``mlflow.db`` with artifacts under ``mlartifacts/``, or the server
``MLFLOW_TRACKING_URI`` names) and ``wandb`` (offline unless ``WANDB_MODE`` says otherwise, ``wandb/``).
They get the resolved recipe as parameters, the running training loss and learning rate at the
trainer's log interval, and every epoch's record (losses per objective, their weights, validation
metrics). Once finetune has evaluated the best checkpoint, :func:`log_results` adds the final metrics
(``final/SPLIT/TASK/METRIC``) and the pictures: to MLflow as metrics and the artifacts ``metrics.json``
and ``plots/``, to TensorBoard as scalars and images."""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

from mmcli.errors import RecipeError
from mmcli.training.callbacks.base import Callback
from mmcli.training.run_state import LOG_EVERY

TRACKER_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
# MLflow 3 refuses its file store; its SQLite store needs these (the `tracking` extra brings them)
MLFLOW_SQLITE_PACKAGES = ("sqlalchemy", "alembic")


def mlflow_local_uri(run_dir: Path) -> str | None:
    """The run's own SQLite database, unless ``MLFLOW_TRACKING_URI`` names a tracking server or store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"


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
            trackers.append(_mlflow_tracker(run_dir, run_name))
        elif name == "wandb":
            from accelerate.tracking import WandBTracker

            os.environ.setdefault("WANDB_MODE", "offline")
            trackers.append(WandBTracker(run_name, dir=str(run_dir)))
    return trackers


def _mlflow_tracker(run_dir: Path, run_name: str) -> Any:
    import importlib.util

    import mlflow
    from accelerate.tracking import MLflowTracker

    local = mlflow_local_uri(run_dir)
    if local is None:  # the server keeps the artifacts where it is configured to
        return MLflowTracker(experiment_name=run_name, run_name=run_name)
    missing = [package for package in MLFLOW_SQLITE_PACKAGES if importlib.util.find_spec(package) is None]
    if missing:
        raise RecipeError(f"training.trackers: 'mlflow' keeps its runs in a SQLite database, which needs {' and '.join(missing)}",
                          hint="pip install 'mmcli[tracking]' (or set MLFLOW_TRACKING_URI to a tracking server)")
    for noisy in ("mlflow.store.db.utils", "alembic"):  # creating the database logs each migration step
        logging.getLogger(noisy).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(local)
    return MLflowTracker(experiment_name=run_name, logging_dir=str((run_dir / "mlartifacts").resolve()), run_name=run_name)


def log_results(names: list[str], run_dir: Path, metrics: dict[str, Any]) -> list[str]:
    """After finetune wrote ``metrics.json`` and ``plots/``: the final metrics and the pictures, to the
    trackers that take them (the CSV one keeps per-epoch numbers only). The trackers were closed when
    training ended, so each is opened again on the same run. Returns a warning per tracker that
    failed: the run itself is complete, so a tracker cannot fail it now."""
    final = {f"final/{key}": value for key, value in flatten({split: values for split, values in metrics.items()
                                                               if split != "training"}).items()}
    plots = sorted((run_dir / "plots").glob("*.png"))
    step = metrics.get("training", {}).get("steps") or 0
    warnings = []
    for name, send in (("mlflow", _mlflow_results), ("tensorboard", _tensorboard_results)):
        if name in names:
            try:
                send(run_dir, metrics, final, plots, step)
            except Exception as error:  # noqa: BLE001 - a server or disk problem: reported, not raised
                warnings.append(f"{name} did not get the final metrics and plots: {type(error).__name__}: {error}")
    return warnings


def _mlflow_results(run_dir: Path, metrics: dict[str, Any], final: dict[str, float], plots: list[Path], step: int) -> None:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    run_id = metrics.get("training", {}).get("mlflow_run_id")
    if not run_id:
        return
    client = MlflowClient(tracking_uri=mlflow_local_uri(run_dir))  # None: MLFLOW_TRACKING_URI
    now = int(time.time() * 1000)
    entries = [Metric(key, value, now, step) for key, value in final.items()]
    for start in range(0, len(entries), 1000):  # MLflow takes at most 1000 metrics a call
        client.log_batch(run_id, metrics=entries[start:start + 1000])
    client.log_artifact(run_id, str(run_dir / "metrics.json"))
    for plot in plots:
        client.log_artifact(run_id, str(plot), "plots")


def _tensorboard_results(run_dir: Path, metrics: dict[str, Any], final: dict[str, float], plots: list[Path], step: int) -> None:
    import numpy as np
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tensorboard"))  # beside the events of training, as one run
    try:
        for key, value in final.items():
            writer.add_scalar(key, value, step)
        for plot in plots:
            with Image.open(plot) as image:
                writer.add_image(f"plots/{plot.stem}", np.asarray(image.convert("RGB")), step, dataformats="HWC")
    finally:
        writer.close()


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

    def on_train_end(self, run: Any) -> dict[str, Any] | None:
        """The MLflow run's id, into ``metrics.json``: where :func:`log_results` adds the final results
        (and where a user finds the run on a shared server)."""
        if not run.is_main or "mlflow" not in run.recipe.training.trackers:
            return None
        return {"mlflow_run_id": run.accelerator.get_tracker("mlflow", unwrap=True).info.run_id}

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
