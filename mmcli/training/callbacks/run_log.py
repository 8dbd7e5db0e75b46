"""``run.log`` in the run directory: what the console showed, as plain text that stays with the run
(start, every epoch's monitored score, losses and weights, the best epoch, an interruption)."""

from __future__ import annotations

import time
from typing import Any

from mmcli.runs import RUN_LOG, append_line
from mmcli.training.callbacks.base import Callback


def _shown(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


class RunLog(Callback):
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.epoch_started = self.started

    def _write(self, run: Any, text: str) -> None:
        if run.is_main:
            append_line(run.run_dir / RUN_LOG, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}")

    def on_train_begin(self, run: Any) -> None:
        rows = len(run.train["__row__"])
        where = f"resuming {run.resumed_from}" if run.resumed_from else "from the start"
        self._write(run, f"training {run.recipe.name}: {rows} train rows, {run.total_steps} steps over {run.epochs} "
                         f"epochs, {run.world_size} process(es) on {run.device}, {where}; best by {run.monitor.label}")

    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        losses = ", ".join(f"{name} {_shown(value)}" for name, value in record.get("train_losses", {}).items())
        self._write(run, f"epoch {record['epoch']} (step {record['step']}, {record['seconds']:.1f} s, "
                         f"{record['samples_per_s']:.0f} samples/s): {run.monitor.label} = "
                         f"{_shown(run.monitor.score(record))}{' best' if improved else ''}; train loss "
                         f"{_shown(record.get('train_loss'))} ({losses}); validation loss {_shown(record.get('validation_loss'))}")

    def on_interrupt(self, run: Any) -> None:
        self._write(run, f"stopped by a signal after step {run.state['step']}; checkpoint {run.last_checkpoint}")

    def on_train_end(self, run: Any) -> dict[str, Any] | None:
        self._write(run, f"done: best {run.monitor.label} = {_shown(run.state['best_score'])} at epoch "
                         f"{run.state['best_epoch']}, {run.state['step']} steps in {time.perf_counter() - self.started:.1f} s")
        return None
