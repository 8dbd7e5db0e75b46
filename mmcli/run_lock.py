"""One writer per run directory: a lock file naming the owning process; stale locks are taken over."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from mmcli.errors import MmcliError

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while ``command`` writes there.

    Another live process holding it -> a one-line error; a lock left by a dead process (same
    host) or an unreadable one is stale and taken over.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _owner(path)
            if owner and owner.get("host") == me["host"] and _alive(int(owner.get("pid", -1))) and owner["pid"] != me["pid"]:
                raise MmcliError(f"{run_dir}: in use by process {owner['pid']} ({owner.get('command', '?')})",
                                 hint="wait for it to finish, or use another --run-dir")
            if owner and owner.get("host") != me["host"]:
                raise MmcliError(f"{run_dir}: locked by process {owner.get('pid')} on host {owner.get('host')}",
                                 hint=f"if that process is gone, delete {path}")
            path.unlink(missing_ok=True)  # stale: its process is dead
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise MmcliError(f"{run_dir}: could not take the lock {path}", hint="another mmcli is starting there; retry")
    try:
        yield
    finally:
        if (_owner(path) or {}).get("pid") == me["pid"]:
            path.unlink(missing_ok=True)
