"""The HTTP interface: ``POST /predict`` (JSON or multipart) and ``GET /health``.

JSON: ``{"rows": [{"text": "it looks crimson", "image": {"base64": "..."}}]}``, or one row without
``"rows"``. Media come as base64 (``{"base64": ..., "suffix": ".png"}``), as multipart file fields
named by input, or, when the server was started with a media root, as paths inside it. An input a
row leaves out is missing for that row. Answers: ``{"predictions": [{task: answer} | {"error": ...}]}``.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from mmcli.serving.batcher import MicroBatcher

DEFAULT_SUFFIX = {"image": ".png", "audio": ".wav", "video": ".mp4"}
MAX_ROWS_PER_REQUEST = 1024


class RequestError(ValueError):
    """A request this server cannot answer; its message is the response's one-line ``detail``."""


def create_app(predictor: Any, max_batch: int = 32, max_wait_ms: float = 5.0, media_root: str | Path | None = None) -> Any:
    """A FastAPI application answering with ``predictor`` (a :class:`mmcli.Predictor`)."""
    inputs = {name: cfg.modality for name, cfg in predictor.run.recipe.inputs.items()}
    root = Path(media_root).resolve() if media_root else None
    # rows name absolute paths this server wrote or checked to lie inside the media root
    batcher = MicroBatcher(lambda rows: predictor.predict(rows, base_dir="/"), max_batch, max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(_: Any):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="mmcli", summary=f"predictions of {predictor.run.run_dir}", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "run_dir": str(predictor.run.run_dir), "inputs": inputs,
                "tasks": list(predictor.run.model.tasks), "max_batch": max_batch, "max_wait_ms": max_wait_ms,
                "served": batcher.stats.as_dict()}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="mmcli-serve-") as scratch:
            try:
                rows = await _request_rows(request, inputs, Path(scratch), root)
            except RequestError as error:
                raise HTTPException(status_code=422, detail=str(error)) from None
            answers = await batcher.submit(rows)
        if all("error" in answer for answer in answers):
            raise HTTPException(status_code=422, detail="; ".join(answer["error"] for answer in answers)[:2000])
        return {"predictions": answers}

    return app


async def _request_rows(request: Any, inputs: dict[str, str], scratch: Path, root: Path | None) -> list[dict[str, Any]]:
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data") or kind.startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        row = {}
        for name, value in form.multi_items():
            if hasattr(value, "read"):
                row[name] = {"bytes": await value.read(), "suffix": Path(value.filename or "").suffix}
            else:
                row[name] = value
        return [_materialise(row, 0, inputs, scratch, root)]
    try:
        body = await request.json()
    except ValueError:
        raise RequestError("the body is neither JSON nor a multipart form") from None
    rows = body.get("rows", [body]) if isinstance(body, dict) else None
    if not isinstance(rows, list) or not rows or not all(isinstance(row, dict) for row in rows):
        raise RequestError('send {"rows": [{input: value, ...}, ...]} or one row {input: value, ...}')
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"{len(rows)} rows in one request; at most {MAX_ROWS_PER_REQUEST}")
    return [_materialise(row, index, inputs, scratch, root) for index, row in enumerate(rows)]


def _materialise(row: dict[str, Any], index: int, inputs: dict[str, str], scratch: Path, root: Path | None) -> dict[str, Any]:
    """The row with every medium as a file path the run's processors read."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        where = f"row {index}, input '{name}'"
        if name not in inputs:
            raise RequestError(f"{where}: this run has no such input (inputs: {', '.join(inputs)})")
        modality = inputs[name]
        if value is None:
            continue
        if modality == "text":
            if not isinstance(value, str):
                raise RequestError(f"{where}: text must be a string")
            out[name] = value
        elif isinstance(value, dict) and ("base64" in value or "bytes" in value):
            data = value.get("bytes")
            if data is None:
                try:
                    data = base64.b64decode(value["base64"], validate=True)
                except (binascii.Error, TypeError):
                    raise RequestError(f"{where}: 'base64' is not valid base64") from None
            path = scratch / f"{index}-{name}{value.get('suffix') or DEFAULT_SUFFIX[modality]}"
            path.write_bytes(data)
            out[name] = str(path)
        elif isinstance(value, str) and root is not None:
            path = (root / value).resolve()
            if not path.is_relative_to(root):
                raise RequestError(f"{where}: '{value}' is outside the server's media root")
            out[name] = str(path)
        else:
            raise RequestError(f'{where}: send {modality} as {{"base64": ...}} or a multipart file'
                               + ("" if root else " (paths are accepted only by a server started with --media-root)"))
    return out
