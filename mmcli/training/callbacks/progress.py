"""Progress on stderr (main process only; silent with --quiet): on a terminal a progress bar; elsewhere
(in the background, under CI, piped) a plain line every few seconds, e.g.
``epoch 3/20 step 412/1000 loss 0.4120 312 samples/s``, so a long epoch is never silent. Each
epoch's monitor is printed as it ends.

The running loss is read from the device at the first step of each epoch and then at most every
``READ_SECONDS`` (each read is one host sync; '-' until the first); samples/s counts the rows the
steps took (a short last batch as its real size)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from mmcli.progress import TrainingProgress, loss_text
from mmcli.training.callbacks.base import Callback

READ_SECONDS = 2.0  # at most one read of the running loss per this many seconds
PLAIN_SECONDS = float(os.environ.get("MMCLI_PROGRESS_SECONDS", "5"))  # between plain lines off a terminal


class PlainProgress:
    """Plain lines for logs: one at the first step, then one every ``every`` seconds, plus epoch lines."""

    def __init__(self, stream: TextIO, every: float = PLAIN_SECONDS) -> None:
        self.stream, self.every = stream, every
        self.last: float | None = None

    def due(self, step: int, total: int) -> bool:
        """Whether a line is printed after this step."""
        return self.last is None or time.monotonic() - self.last >= self.every or step >= total

    def step(self, epoch: int, epochs: int, step: int, total: int, loss: float, samples_per_s: float) -> None:
        if not self.due(step, total):
            return
        self.last = time.monotonic()
        self.line(f"epoch {epoch}/{epochs} step {step}/{total} loss {loss_text(loss)} {samples_per_s:.0f} samples/s")

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def samples_per_second(run: Any) -> float:
    """Rows per second this epoch so far (every process's rows)."""
    return run.epoch_rows / max(time.perf_counter() - run.epoch_clock[0], 1e-9)


class Progress(Callback):
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.bar: TrainingProgress | None = None
        self.plain: PlainProgress | None = None
        self.read_at = 0.0

    def on_train_begin(self, run: Any) -> None:
        if not (run.show_progress and run.is_main):
            return
        stream = self.stream or sys.stderr
        if stream.isatty():
            self.bar = TrainingProgress(run.total_steps, completed=run.state["step"])
            self.bar.__enter__()
        else:
            self.plain = PlainProgress(stream, PLAIN_SECONDS)

    def on_epoch_begin(self, run: Any) -> None:
        run.shown_loss = float("nan")  # this epoch's loss: none read yet

    def on_step_end(self, run: Any) -> None:
        if self.bar is None and self.plain is None:
            return
        now = time.monotonic()
        epoch, step = run.state["epoch"], run.state["step"]
        first = step - run.epoch_clock[1] == 1
        printing = self.plain is not None and self.plain.due(step, run.total_steps)
        if first or printing or now - self.read_at >= READ_SECONDS:  # a printed loss is a fresh one
            run.sync()
            self.read_at = now
        if self.bar is not None:
            self.bar.step(epoch, run.epochs, run.shown_loss)
        elif self.plain is not None:
            self.plain.step(epoch, run.epochs, step, run.total_steps, run.shown_loss, samples_per_second(run))

    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        losses = record.get("train_losses", {})
        weights = record.get("loss_weights", {})
        # several objectives: each one's loss and the weight it trained with
        detail = ("  " + ", ".join(f"{name} {_shown(value)} (w {weights.get(name, 0):.3g})"
                                   for name, value in losses.items())) if len(losses) > 1 else None
        if self.bar is not None:
            self.bar.epoch_done(record["epoch"], run.monitor.label, run.monitor.score(record), improved,
                                record.get("samples_per_s"))
            if detail:
                self.bar.note(detail)
        elif self.plain is not None:
            score = run.monitor.score(record)
            shown = "not finite" if score is None else f"{score:.4f}"
            self.plain.line(f"epoch {record['epoch']}: {run.monitor.label} = {shown}{' best' if improved else ''} "
                            f"({record.get('samples_per_s', 0):.0f} samples/s)")
            if detail:
                self.plain.line(detail)

    def on_close(self, run: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        self.plain = None


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
