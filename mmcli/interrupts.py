"""SIGTERM (what CI runners, Kubernetes and ``timeout`` send) and SIGINT end a command the same way:
at once where there is nothing to save, and at the next step boundary while training, after a full
checkpoint, so that ``--resume`` continues exactly there. A second signal does not wait. The command
then exits 128 + the signal number (143 for SIGTERM, 130 for SIGINT) with one line (one JSON object
with ``--json``) saying where it stopped."""

from __future__ import annotations

import contextlib
import signal
from typing import Any, Iterator


class Interrupted(KeyboardInterrupt):
    """A command stopped by a signal; ``details`` say where (step, checkpoint) when it stopped cleanly."""

    def __init__(self, signum: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.details = signum, details or {}

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_state: dict[str, Any] = {"graceful": 0, "requested": None}


def _handle(signum: int, frame: Any) -> None:
    if _state["graceful"] and _state["requested"] is None:
        _state["requested"] = signum  # the trainer stops at the end of this step
        return
    raise Interrupted(signum)


def install() -> None:
    """Route SIGTERM and SIGINT through :func:`_handle` (the CLI does, for every command)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _handle)


@contextlib.contextmanager
def graceful() -> Iterator[None]:
    """While inside, a first signal is noted for :func:`requested` instead of raised."""
    _state["graceful"] += 1
    try:
        yield
    finally:
        _state["graceful"] -= 1
        if not _state["graceful"]:
            _state["requested"] = None


def requested() -> int | None:
    """The signal that asked the command to stop, if one did."""
    return _state["requested"]


def worker_defaults(parent: int) -> None:
    """For a forked worker process: signals back to their defaults, Ctrl-C left to the parent, and
    death with the parent (Linux), so a killed command leaves no orphan working on."""
    import ctypes
    import os

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
