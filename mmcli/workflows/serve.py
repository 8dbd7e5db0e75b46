"""serve: a trained run behind HTTP, loaded once, holding the run's shared lock while it serves (so a
training cannot replace the checkpoint under it)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Callable

from mmcli.errors import DataError

# After SIGTERM/SIGINT, requests in flight get this long to be answered before their connections are
# dropped: without a bound uvicorn waits for every open request, a stalled upload included.
SHUTDOWN_GRACE_S = 1.0


def serve_run(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 32,
              max_wait_ms: float = 5.0, media_root: str | Path | None = None,
              on_ready: Callable[[dict[str, Any]], None] | None = None, max_upload_mb: float = 32.0) -> dict[str, Any]:
    """Serve until interrupted (SIGINT/SIGTERM); ``on_ready`` is told the address once the port is
    bound. Returns what was served."""
    from mmcli.interrupts import graceful, requested
    from mmcli.run_lock import run_lock
    from mmcli.workflows.run_dir import existing_run_dir

    try:
        import uvicorn

        from mmcli.serving.app import create_app
    except ImportError as error:
        raise DataError(f"serve needs {error.name}, which is not installed", hint="pip install 'mmcli[serve]'") from None
    if max_batch < 1 or max_wait_ms < 0 or not max_upload_mb > 0:
        raise DataError("--max-batch must be at least 1, --max-wait-ms at least 0 and --max-upload-mb above 0")
    if media_root is not None and not Path(media_root).is_dir():
        raise DataError(f"--media-root {media_root}: no such folder")
    with run_lock(existing_run_dir(run_dir), "serve", shared=True):
        from mmcli.workflows.predict import Predictor

        predictor = Predictor(run_dir)
        app = create_app(predictor, max_batch, max_wait_ms, media_root, max_upload_mb)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=SHUTDOWN_GRACE_S))
        endpoints = ["POST /predict", "GET /health"] + (["POST /generate", "GET /"] if predictor.prompted_tasks() else [])
        address: dict[str, Any] = {"run_dir": str(run_dir), "endpoints": endpoints}

        def ready() -> None:
            bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port  # --port 0: the OS chose
            address["url"] = f"http://{host}:{bound}"
            if on_ready is not None:
                on_ready(address)

        _notify_when_started(server, ready)
        _stop_batcher_first(server, app.state.batcher)
        # uvicorn stops on SIGINT/SIGTERM, then raises the signal again for whoever listens: here that
        # is the normal way a server ends, so it is noted rather than raised
        with graceful():
            try:
                server.run()
            except SystemExit:  # uvicorn exits when it cannot bind
                server.started = False
            stopped_by = requested()
        if not server.started:
            raise DataError(f"could not listen on {host}:{port} (in use, or not allowed)", hint="pass another --port")
        return {**address, "served": app.state.batcher.stats.as_dict(),
                "stopped_by": signal.Signals(stopped_by).name if stopped_by else None}


def _notify_when_started(server: Any, notify: Callable[[], None]) -> None:
    """Call ``notify`` once uvicorn has bound its socket (it sets ``started`` then)."""
    original = server.startup

    async def startup(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        if server.started:
            notify()

    server.startup = startup


def _stop_batcher_first(server: Any, batcher: Any) -> None:
    """On a stop signal, end the micro-batcher before uvicorn waits for open requests: those waiting
    on the model get their answer or a 503 within one model call, instead of a 500 once uvicorn's
    grace period runs out."""
    original = server.shutdown

    async def shutdown(*args: Any, **kwargs: Any) -> None:
        await batcher.stop()
        await original(*args, **kwargs)

    server.shutdown = shutdown
