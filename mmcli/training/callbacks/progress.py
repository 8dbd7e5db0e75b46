"""The progress bar on stderr (main process only; silent with --quiet or --json): steps, the
epoch's running loss (read at the trainer's log interval, not every step) and each epoch's monitor."""

from __future__ import annotations

from typing import Any

from mmcli.progress import TrainingProgress
from mmcli.training.callbacks.base import Callback


class Progress(Callback):
    def __init__(self) -> None:
        self.bar: TrainingProgress | None = None

    def on_train_begin(self, run: Any) -> None:
        if run.show_progress and run.is_main:
            self.bar = TrainingProgress(run.total_steps, completed=run.state["step"])
            self.bar.__enter__()

    def on_step_end(self, run: Any) -> None:
        if self.bar is not None:
            self.bar.step(run.state["epoch"], run.epochs, run.shown_loss)

    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        if self.bar is not None:
            self.bar.epoch_done(record["epoch"], run.monitor.label, run.monitor.score(record), improved,
                                record.get("samples_per_s"))
            losses = record.get("train_losses", {})
            if len(losses) > 1:  # several objectives: each one's loss and the weight it trained with
                weights = record.get("loss_weights", {})
                self.bar.note("  " + ", ".join(f"{name} {_shown(value)} (w {weights.get(name, 0):.3g})"
                                               for name, value in losses.items()))

    def on_close(self, run: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
