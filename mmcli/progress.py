"""A rich progress bar on stderr for training (silent with --quiet or --json)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, total_steps: int, enabled: bool = True, completed: int = 0) -> None:
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]train[/] epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=completed, epoch="1/?", loss="-")

    def __enter__(self) -> "TrainingProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def step(self, epoch: int, epochs: int, loss: float) -> None:
        """One step done; ``loss``: the epoch's running loss as last read (NaN: not read yet, shown '-')."""
        self.progress.update(self.task, advance=1, epoch=f"{epoch}/{epochs}", loss=loss_text(loss))

    def epoch_done(self, epoch: int, monitor: str, score: float | None, improved: bool,
                   samples_per_s: float | None = None) -> None:
        if self.enabled:
            mark = " [green]best[/]" if improved else ""
            shown = "not finite" if score is None else f"{score:.4f}"
            speed = "" if samples_per_s is None else f" ({samples_per_s:.0f} samples/s)"
            self.progress.console.print(f"epoch {epoch}: {monitor} = {shown}{mark}{speed}")

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text)


def loss_text(loss: float | None) -> str:
    """A running loss as shown: '-' until one was read."""
    return "-" if loss is None or loss != loss else f"{loss:.4f}"


@contextmanager
def task_progress(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for a counted job; yields ``advance(n)``."""
    progress = Progress(TextColumn(f"[bold]{description}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
