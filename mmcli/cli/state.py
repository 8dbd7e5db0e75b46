"""Output mode shared by all commands (--json, --quiet, --debug) and the error boundary."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import typer


@dataclass
class OutputMode:
    json: bool = False
    quiet: bool = False
    debug: bool = False

    @property
    def show_progress(self) -> bool:
        """Progress goes to stderr, so it shows with --json too (stdout then holds only the JSON)."""
        return not self.quiet


GLOBAL = OutputMode()


def mode(json_output: bool, quiet: bool, debug: bool) -> OutputMode:
    """Per-command flags add to the global ones (``mmcli --json evaluate`` = ``mmcli evaluate --json``)."""
    return OutputMode(json=json_output or GLOBAL.json, quiet=quiet or GLOBAL.quiet, debug=debug or GLOBAL.debug)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """In --json mode stdout carries exactly one JSON object: anything else printed goes to stderr."""
    if not active:
        yield
        return
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved


def execute(out: OutputMode, work: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], None] | None = None,
            exit_code: Callable[[dict[str, Any]], int] | None = None) -> None:
    """Run ``work``; print its result as JSON or through ``render``; turn errors into one line + exit code."""
    from mmcli.errors import EXIT_RUNTIME, MmcliError
    from mmcli.interrupts import Interrupted, install

    install()
    said: list[str] = []  # warnings printed while the work ran (MmcliWarning): not printed again at the end
    try:
        with _stdout_to_stderr(out.json), _said_warnings(said):
            result = work()
    except MmcliError as error:
        _fail(out, error.one_line(), error.exit_code)
    except Interrupted as stopped:
        _fail(out, _stopped_line(stopped), stopped.exit_code, {"interrupted": {"signal": str(stopped), **stopped.details}})
    except KeyboardInterrupt:
        _fail(out, "interrupted", 130)
    except OSError as error:  # the environment, not the input: a read-only folder, a full disk
        _fail(out, _environment_line(error), EXIT_RUNTIME)
    except Exception as error:  # noqa: BLE001 - the CLI boundary: every failure becomes one line
        message = f"internal error: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
        _fail(out, message + ("" if out.debug else " (rerun with --debug for the traceback)"), EXIT_RUNTIME)
    code = exit_code(result) if exit_code else 0
    for warning in _warnings(result):  # on stderr, in every mode (the JSON object has them too)
        if warning not in said:
            _print_warning(warning)
    if said:
        result = {**result, "warnings": [*said, *(w for w in result.get("warnings", []) if w not in said)]}
    if os.environ.get("RANK", "0") != "0":  # under a launcher only the main process reports (errors still do)
        if code:
            raise typer.Exit(code)
        return
    if out.json:
        sys.stdout.write(json.dumps({"ok": code == 0, **result}, default=str) + "\n")
    elif render is not None and not out.quiet:
        render(result)
    if code:
        raise typer.Exit(code)


def _print_warning(warning: str) -> None:
    from rich.text import Text

    _stderr_console().print(Text.assemble(("warning: ", "bold yellow"), warning))


@contextlib.contextmanager
def _said_warnings(said: list[str]) -> Iterator[None]:
    """Print each ``MmcliWarning`` raised during the work as it happens (a server that runs until stopped
    still says it), once, and keep it for the JSON result; other warnings go where they always go."""
    import warnings

    from mmcli.errors import MmcliWarning

    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        shown = warnings.showwarning
        warnings.simplefilter("always", MmcliWarning)  # we deduplicate: Python's registry would hide a repeat run's

        def show(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
            if not issubclass(category, MmcliWarning):
                shown(message, category, *args, **kwargs)
            elif str(message) not in said:
                said.append(str(message))
                _print_warning(str(message))

        warnings.showwarning = show
        yield


def _warnings(result: dict[str, Any]) -> list[str]:
    """A result's warnings and those of the stages it ran (``pretrain``)."""
    found = list(result.get("warnings", []))
    for stage in ("pretrain",):
        if isinstance(result.get(stage), dict):
            found += result[stage].get("warnings", [])
    return found


_ENVIRONMENT_HINTS = {
    errno.EACCES: "it is not writable by you: choose another output_dir or data.cache_dir, or fix its permissions",
    errno.EPERM: "it is not writable by you: choose another output_dir or data.cache_dir, or fix its permissions",
    errno.EROFS: "its file system is read-only: choose another output_dir or data.cache_dir",
    errno.ENOSPC: "the disk is full: free space or choose another output_dir or data.cache_dir (nothing half-written was kept)",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another folder",
}


def _environment_line(error: OSError) -> str:
    where = error.filename or "a file"
    hint = _ENVIRONMENT_HINTS.get(error.errno or 0)
    reason = error.strerror or type(error).__name__
    return f"cannot write {where}: {reason} ({hint})" if hint else f"{where}: {reason}"


def _stopped_line(stopped: Any) -> str:
    details = stopped.details
    if "checkpoint" in details:
        return (f"stopped by {stopped} after step {details['step']}: checkpoint {details['checkpoint']} saved "
                f"(continue with --resume)")
    return f"stopped by {stopped}"


def _fail(out: OutputMode, message: str, code: int, extra: dict[str, Any] | None = None) -> None:
    if out.debug:
        traceback.print_exc(file=sys.stderr)
    if out.json:
        sys.stdout.write(json.dumps({"ok": False, "error": message, "exit_code": code, **(extra or {})}, default=str) + "\n")
    from rich.text import Text

    _stderr_console().print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(code)
