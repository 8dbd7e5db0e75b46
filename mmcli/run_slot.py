"""Where a training writes, so that a run never destroys a previous one before it has produced its
own: a new name trains in place; a name that holds a run is refused unless ``--overwrite`` (or
``--resume``, which continues it); with ``--overwrite`` the new run trains in a hidden staging folder
(``OUTPUT_DIR/.NAME.partial``) that replaces the old run only once finished: the old one is renamed
aside (``.NAME.replaced``), the new one renamed into place, the old one deleted. What a killed
command leaves is put right by the next one under the lock: a staging folder is deleted, an old run
whose replacement never landed is put back."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from mmcli.errors import MmcliError
from mmcli.runs import METRICS_FILE


def staging(run_dir: Path) -> tuple[Path, Path]:
    """(the staging folder of a replacing run, where the replaced run waits)."""
    return run_dir.parent / f".{run_dir.name}.partial", run_dir.parent / f".{run_dir.name}.replaced"


def recover(run_dir: Path) -> None:
    partial, replaced = staging(run_dir)
    if replaced.exists():
        if run_dir.exists():
            shutil.rmtree(replaced)
        else:  # killed between the two renames: the old run goes back
            os.replace(replaced, run_dir)
    if partial.exists():
        shutil.rmtree(partial)


def previous_run(run_dir: Path) -> str | None:
    """"finished", "unfinished" (something is there, but no metrics) or None (nothing there)."""
    if (run_dir / METRICS_FILE).is_file():
        return "finished"
    return "unfinished" if run_dir.is_dir() and any(run_dir.iterdir()) else None


def choose_target(run_dir: Path, resume: bool, overwrite: bool) -> Path:
    """The folder this training writes into (call under the run's lock). ``resume`` with nothing there is
    refused: whoever types --resume expects a run to go on, and a mistyped name must not quietly start a new
    one (a run stopped before its first checkpoint is there, and starts again: the caller says so)."""
    recover(run_dir)
    previous = previous_run(run_dir)
    if resume:
        if previous is None:
            raise MmcliError(f"--resume: {run_dir} holds no run to continue "
                             f"({'it is empty' if run_dir.is_dir() else 'no such folder'})",
                             hint="leave out --resume to start it, or give the name= (or --run-dir) of the run to continue")
        return run_dir
    if previous is None:
        return run_dir
    if not overwrite:
        raise MmcliError(f"{run_dir}: holds a {previous} run; mmcli never replaces one unasked",
                         hint="--overwrite replaces it once the new run has finished (it stays as it is until then), "
                              "--resume continues it, or give another name=")
    return staging(run_dir)[0]


def land(target: Path, run_dir: Path) -> None:
    """Put a finished run trained in ``target`` in place of ``run_dir``."""
    if target == run_dir:
        return
    _, replaced = staging(run_dir)
    if run_dir.exists():
        os.replace(run_dir, replaced)
    os.replace(target, run_dir)
    fd = os.open(run_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    shutil.rmtree(replaced, ignore_errors=True)


_ABSENT = object()


def recipe_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """``"KEY: A in the run, B now"`` for every leaf that differs between two recipes (as JSON dicts)."""
    found = []
    for key in [*saved, *(k for k in current if k not in saved)]:
        before, after = saved.get(key, _ABSENT), current.get(key, _ABSENT)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            found += recipe_differences(before, after, f"{prefix}{key}.")
        else:
            found.append(f"{prefix}{key}: {_shown(before)} in the run, {_shown(after)} now")
    return found


def _shown(value: Any) -> str:
    import json

    return "not set" if value is _ABSENT else json.dumps(value, default=str)
