"""After training, tasks that decide with settings measured on held-out rows (a multi-label task's
per-class thresholds) calibrate them on the validation split with the best weights; the best
checkpoint is saved again with them, and what was chosen goes into ``metrics.json``."""

from __future__ import annotations

from typing import Any

from mmcli.inference.predictor import run_inference
from mmcli.runs import BEST_CHECKPOINT
from mmcli.training.callbacks.base import Callback
from mmcli.training.checkpoints import save_checkpoint


def calibrated_tasks(model: Any) -> dict[str, Any]:
    return {name: task for name, task in model.tasks.items() if callable(getattr(task, "calibrate", None))}


class TaskCalibration(Callback):

    def on_train_end(self, run: Any) -> dict[str, Any] | None:
        tasks = calibrated_tasks(run.model)
        if not run.is_main or not tasks:
            return None
        if run.validation is None:
            return {"calibration": {name: "not calibrated: no validation split" for name in tasks}}
        inference = run_inference(run.model, run.validation, run.recipe.training.eval_batch_size, run.device)
        report = {}
        for name, task in tasks.items():
            if name in run.validation:
                chosen = task.calibrate(inference.predictions[name].to(run.device), run.validation[name].to(run.device))
                if chosen is not None:
                    report[name] = chosen
        if report:
            save_checkpoint(run.run_dir / BEST_CHECKPOINT, run.model, run.best_info)  # what was chosen is in buffers
        return {"calibration": report} if report else None
