"""One writer per run directory, through an OS lock (``fcntl.flock``) that cannot be stolen while its
holder lives and is released by the kernel when the holder dies, however it dies.

The lock file sits beside the run directory (``OUTPUT_DIR/.NAME.lock``), not inside it, so a run can
be trained in a staging folder and renamed into place under the lock. Writers (finetune, pretrain,
evaluate) hold it exclusively; readers (predict, encode) hold it shared, so they run together but
never beside a writer: a run that is being trained is refused with one line naming the process.
The file stays when released (deleting a lock file races with the next process opening it); what it
holds (the holder's pid and command) only serves the error message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from mmcli.errors import MmcliError


def lock_path(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def _holder(path: Path) -> str:
    try:
        owner = json.loads(path.read_text())
        where = "" if owner.get("host") == socket.gethostname() else f" on host {owner.get('host')}"
        return f"process {owner.get('pid')}{where} ({owner.get('command', '?')})"
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str, shared: bool = False) -> Iterator[None]:
    """Hold the run's lock while ``command`` works on ``run_dir`` (exclusive, or ``shared`` for readers);
    a one-line error if another process holds it in a way that conflicts."""
    path = lock_path(Path(run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MmcliError(f"{run_dir}: in use by {_holder(path)}",
                             hint="wait for it to finish, or use another run directory") from None
        # who holds it, for the message another process gets
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
