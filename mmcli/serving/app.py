"""The HTTP interface: ``POST /predict`` (JSON or multipart), ``GET /health``, and for a run with a
language-model task ``POST /generate`` (one answer streamed as server-sent events) and ``GET /`` (a page to
chat with it; :mod:`mmcli.serving.generate`).

JSON: ``{"rows": [{"text": "it looks crimson", "image": {"base64": "..."}}]}``, or one row without
``"rows"``. Media come as base64 (``{"base64": ..., "suffix": ".png"}``), as multipart file fields
named by input, or, when the server was started with a media root, as paths inside it. An input a
row leaves out is missing for that row; a row must give at least one. Answers: ``{"predictions":
[{task: answer} | {"error": ...}]}``.

A bad request is answered 4xx with a one-line ``detail`` that names what was wrong ("body", "rows",
"row 0, input 'image': ...") and never a path of the server's: 413 for a body over the upload limit,
415 for a content type other than JSON or a form, 422 for the rest. A suffix (the JSON ``suffix``, or
the extension of a multipart file's name) must be a dot and 1-10 letters or digits (".png"), else the
request is refused rather than the name guessed at; without one the modality's default is used.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mmcli.serving.batcher import BatcherStopped, MicroBatcher
from mmcli.serving.generate import page, split_settings, stream_answer

DEFAULT_SUFFIX = {"image": ".png", "audio": ".wav", "video": ".mp4"}
SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
MAX_ROWS_PER_REQUEST = 1024
DEFAULT_MAX_UPLOAD_MB = 32.0
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSON_SHAPE = 'send {"rows": [{input: value, ...}, ...]} or one row {input: value, ...}'


class RequestError(ValueError):
    """A request this server cannot answer; its message is the response's one-line ``detail``."""

    def __init__(self, detail: str, status: int = 422) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class Upload:
    """A multipart file (JSON media come as ``{"base64": ...}``, so a client cannot forge one)."""

    data: bytes
    filename: str


@dataclass
class Materialised:
    """Rows as the run's processors read them, and what each server path was to the client."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    shown: list[dict[str, str]] = field(default_factory=list)


def create_app(predictor: Any, max_batch: int = 32, max_wait_ms: float = 5.0, media_root: str | Path | None = None,
               max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> Any:
    """A FastAPI application answering with ``predictor`` (a :class:`mmcli.Predictor`)."""
    inputs = {name: cfg.modality for name, cfg in predictor.run.recipe.inputs.items()}
    root = Path(media_root).resolve() if media_root else None
    max_bytes = int(max_upload_mb * 1024 * 1024)
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
                "max_upload_mb": max_upload_mb, "served": batcher.stats.as_dict()}

    prompted = predictor.prompted_tasks() if hasattr(predictor, "prompted_tasks") else []

    @app.get("/", response_class=HTMLResponse)
    async def chat_page() -> str:
        if not prompted:
            raise HTTPException(status_code=404, detail="this run has no language-model task to chat with; "
                                                        "POST /predict answers its tasks")
        return page(Path(predictor.run.run_dir), inputs, prompted[0])

    @app.post("/generate")
    async def generate(request: Request) -> Any:
        if not prompted:
            raise HTTPException(status_code=404, detail="this run has no language-model task (POST /predict instead)")
        scratch = tempfile.mkdtemp(prefix="mmcli-serve-")
        try:
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json" and kind not in FORM_TYPES:
                raise RequestError(f"body: content type '{kind or 'none'}' is not accepted; send multipart/form-data "
                                   "or application/json", 415)
            body = await _read_body(request, max_bytes, max_upload_mb)
            rows = [await _form_row(request, body, max_bytes)] if kind in FORM_TYPES else _json_rows(body)
            if len(rows) != 1:
                raise RequestError("rows: /generate answers one row at a time")
            row, prompt, settings = split_settings(rows[0], RequestError)
            materialised, shown = _materialise(row, 0, inputs, Path(scratch), root, allow_empty=True)
        except RequestError as error:
            shutil.rmtree(scratch, ignore_errors=True)
            raise HTTPException(status_code=error.status, detail=str(error)) from None

        def clean(detail: str) -> str:
            return _public(detail, 0, inputs, shown, scratch)

        async def events() -> Any:
            try:
                async for item in stream_answer(predictor, materialised, prompt, settings, prompted[0], clean):
                    yield item
            finally:
                shutil.rmtree(scratch, ignore_errors=True)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        from mmcli.errors import MmcliError

        with tempfile.TemporaryDirectory(prefix="mmcli-serve-") as scratch:
            try:
                given = await _request_rows(request, inputs, Path(scratch), root, max_bytes, max_upload_mb)
                answers = await batcher.submit(given.rows)
            except RequestError as error:
                raise HTTPException(status_code=error.status, detail=str(error)) from None
            except BatcherStopped:
                raise HTTPException(status_code=503, detail="the server is stopping") from None
            except MmcliError as error:  # the run refused the rows as a whole
                raise HTTPException(status_code=422, detail=error.one_line().replace(scratch, "(upload)")) from None
            answers = [{"error": _public(answer["error"], index, inputs, given.shown[index], scratch)} if "error" in answer
                       else answer for index, answer in enumerate(answers)]
        if all("error" in answer for answer in answers):
            raise HTTPException(status_code=422, detail="; ".join(answer["error"] for answer in answers)[:2000])
        return {"predictions": answers}

    return app


async def _request_rows(request: Request, inputs: dict[str, str], scratch: Path, root: Path | None, max_bytes: int,
                        max_upload_mb: float) -> Materialised:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and kind not in FORM_TYPES:
        raise RequestError(f"body: content type '{kind or 'none'}' is not accepted; send application/json, "
                           f"multipart/form-data or application/x-www-form-urlencoded", 415)
    body = await _read_body(request, max_bytes, max_upload_mb)
    if kind in FORM_TYPES:
        rows = [await _form_row(request, body, max_bytes)]
    else:
        rows = _json_rows(body)
    out = Materialised()
    for index, row in enumerate(rows):
        materialised, shown = _materialise(row, index, inputs, scratch, root)
        out.rows.append(materialised)
        out.shown.append(shown)
    return out


async def _read_body(request: Request, max_bytes: int, max_upload_mb: float) -> bytes:
    """The body, refused (413) as soon as it is known to be over the limit: from its declared length
    before reading, or while reading one sent in chunks."""
    too_large = RequestError(f"body: larger than this server's upload limit of {max_upload_mb:g} MB (--max-upload-mb)", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError("body: the client disconnected before sending it all", 400) from None
    return b"".join(chunks)


def _json_rows(body: bytes) -> list[Any]:
    if not body.strip():
        raise RequestError(f"body: empty; {JSON_SHAPE}")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise RequestError(f"body: not valid JSON; {JSON_SHAPE}") from None
    if not isinstance(parsed, dict):
        raise RequestError(f"body: a JSON {type(parsed).__name__}; {JSON_SHAPE}")
    if "rows" not in parsed:
        return [parsed]
    rows = parsed["rows"]
    if len(parsed) > 1:
        raise RequestError(f"body: next to 'rows' there is '{next(k for k in parsed if k != 'rows')}'; {JSON_SHAPE}")
    if not isinstance(rows, list) or not rows:
        raise RequestError(f"rows: must be a non-empty list; {JSON_SHAPE}")
    if len(rows) > MAX_ROWS_PER_REQUEST:
        raise RequestError(f"rows: {len(rows)} in one request; at most {MAX_ROWS_PER_REQUEST}")
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RequestError(f"row {index}: a JSON {type(row).__name__}, not an object {{input: value, ...}}")
    return rows


async def _form_row(request: Request, body: bytes, max_bytes: int) -> dict[str, Any]:
    """One row from a multipart or urlencoded form, parsed from the body already read (and capped)."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    row: dict[str, Any] = {}
    try:
        async with Request(request.scope, replay).form(max_part_size=max_bytes) as form:
            for name, value in form.multi_items():
                if name in row:
                    raise RequestError(f"row 0, input '{name}': given more than once")
                row[name] = Upload(await value.read(), value.filename or "") if hasattr(value, "read") else value
    except StarletteHTTPException as error:  # starlette's form parser: a malformed form
        raise RequestError(f"body: not a valid form ({error.detail})", 400) from None
    return row


def _materialise(row: dict[str, Any], index: int, inputs: dict[str, str], scratch: Path,
                 root: Path | None, allow_empty: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """The row with every medium as a file path the run's processors read, and for each such path
    what the client called it (so that an error never shows the server's own paths)."""
    out: dict[str, Any] = {}
    shown: dict[str, str] = {}
    for name, value in row.items():
        where = f"row {index}, input '{name}'"
        if name not in inputs:
            raise RequestError(f"{where}: this run has no such input (inputs: {', '.join(inputs)})")
        modality = inputs[name]
        if value is None:
            continue
        if modality == "text":
            if not isinstance(value, str):
                raise RequestError(f"{where}: text must be a string, not {_kind(value)}")
            out[name] = value
            continue
        if isinstance(value, Upload):
            data, suffix = value.data, _suffix(Path(value.filename).suffix, modality, f"{where}: the file name's extension")
        elif isinstance(value, dict) and "base64" in value:
            data, suffix = _base64_medium(value, modality, where)
        elif isinstance(value, str) and root is not None:
            path = (root / value).resolve()
            if not path.is_relative_to(root):
                raise RequestError(f"{where}: '{value}' is outside the server's media root")
            out[name], shown[str(path)] = str(path), value
            continue
        else:
            raise RequestError(f'{where}: send {modality} as {{"base64": ...}} or a multipart file'
                               + ("" if root else " (paths are accepted only by a server started with --media-root)"))
        if not data:
            raise RequestError(f"{where}: the file is empty (0 bytes)")
        # the name is built only from the row index, a known input name and a checked suffix
        path = scratch / f"{index}-{name}{suffix}"
        path.write_bytes(data)
        out[name], shown[str(path)] = str(path), "the uploaded file"
    if not out and not allow_empty:  # a prompt alone may ask a language model without media
        raise RequestError(f"row {index}: no input given (this run's inputs: {', '.join(inputs)})")
    return out, shown


def _base64_medium(value: dict[str, Any], modality: str, where: str) -> tuple[bytes, str]:
    unknown = sorted(set(value) - {"base64", "suffix"})
    if unknown:
        raise RequestError(f"{where}: unknown key '{unknown[0]}' (give 'base64' and optionally 'suffix')")
    encoded = value["base64"]
    if not isinstance(encoded, str):
        raise RequestError(f"{where}: 'base64' must be a string, not {_kind(encoded)}")
    try:  # line breaks are allowed: `base64 FILE` wraps its output
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        raise RequestError(f"{where}: 'base64' is not valid base64") from None
    return data, _suffix(value.get("suffix"), modality, f"{where}: 'suffix'")


def _suffix(suffix: Any, modality: str, where: str) -> str:
    if suffix is None or suffix == "":
        return DEFAULT_SUFFIX[modality]
    if not isinstance(suffix, str) or not SAFE_SUFFIX.fullmatch(suffix):
        shown = json.dumps(suffix)[:40] if isinstance(suffix, str) else _kind(suffix)
        raise RequestError(f"{where} {shown} is not a file extension like '.png' (a dot and 1-10 letters or digits)")
    return suffix


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number", Upload: "a file"}
    return kinds.get(type(value), type(value).__name__)


def _public(error: str, index: int, inputs: dict[str, str], shown: dict[str, str], scratch: str) -> str:
    """A decoding error as the client may see it: the server's paths replaced by what the client sent,
    each ``input: reason`` part as ``row N, input 'input': reason``."""
    for path, name in shown.items():
        error = error.replace(path, name)
    error = error.replace(scratch, "(upload)")  # any path left there, e.g. in a library's message
    parts = []
    for part in error.split("; "):
        name, colon, reason = part.partition(": ")
        parts.append(f"row {index}, input '{name}': {reason}" if colon and name in inputs else part)
    return "; ".join(parts)
