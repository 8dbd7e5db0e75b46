"""The HTTP layer of ``mmcli serve`` with a stand-in predictor: every bad request is a 4xx whose one-line
detail names the request field and no path of the server's; limits on body size and content type."""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
from fastapi.testclient import TestClient
from PIL import Image

from mmcli.serving.app import MAX_ROWS_PER_REQUEST, create_app

INPUTS = {"text": "text", "image": "image", "audio": "audio"}


class FakePredictor:
    """Answers like :class:`mmcli.Predictor`: a row whose image PIL cannot open gets the error the run's
    processors write, which names the file the server wrote."""

    def __init__(self) -> None:
        inputs = {name: SimpleNamespace(modality=modality) for name, modality in INPUTS.items()}
        self.run = SimpleNamespace(recipe=SimpleNamespace(inputs=inputs), run_dir="runs/fake",
                                   model=SimpleNamespace(tasks={"scene": None}))

    def predict(self, rows: list[dict[str, Any]], base_dir: str = ".") -> list[dict[str, Any]]:
        answers = []
        for row in rows:
            try:
                if "image" in row:
                    Image.open(row["image"]).verify()
                answers.append({"scene": {"label": "circle"}})
            except Exception:  # noqa: BLE001
                answers.append({"error": f"image: not an image (unrecognised format): {row['image']}"})
        return answers


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


PNG = _png()
GARBAGE = base64.b64encode(b"hello").decode()
LIMIT_MB = 0.05  # 52 KB: each request below is far smaller, except the ones that test the limit
TOO_LARGE = 60 * 1024

# (what is sent, the status, what the detail must name)
JSON_CORPUS: list[tuple[Any, int, str]] = [
    ({"image": {"base64": PNG, "suffix": "/x.png"}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": PNG, "suffix": "../../../etc/cron.d/x"}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": PNG, "suffix": ".png/.."}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": PNG, "suffix": 5}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": PNG, "suffix": ["x"]}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": 5}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": ["aGk="]}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": None}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": "é"}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": "not base64!"}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": ""}}, 422, "row 0, input 'image'"),
    ({"image": {"bytes": "abc"}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": PNG, "path": "/etc/passwd"}}, 422, "row 0, input 'image'"),
    ({"image": {"base64": GARBAGE}}, 422, "row 0, input 'image'"),
    ({"image": "images/1.png"}, 422, "row 0, input 'image'"),
    ({"image": 3}, 422, "row 0, input 'image'"),
    ({"audio": [1, 2]}, 422, "row 0, input 'audio'"),
    ({"text": 5}, 422, "row 0, input 'text'"),
    ({"text": {"base64": "aGk="}}, 422, "row 0, input 'text'"),
    ({"colour": "red"}, 422, "row 0, input 'colour'"),
    ({"colour": "red", "shade": 1}, 422, "row 0, input 'colour'"),
    ({}, 422, "row 0"),
    ({"image": None, "text": None}, 422, "row 0"),
    ({"rows": 5}, 422, "rows"),
    ({"rows": "text"}, 422, "rows"),
    ({"rows": []}, 422, "rows"),
    ({"rows": None}, 422, "rows"),
    ({"rows": [{"text": "a"}] * (MAX_ROWS_PER_REQUEST + 1)}, 422, "rows"),
    ({"rows": [{"text": "a"}, 7]}, 422, "row 1"),
    ({"rows": [{"text": "a"}, {"text": "b", "colour": 1}]}, 422, "row 1, input 'colour'"),
    ({"rows": [{"image": {"base64": GARBAGE}}, {"image": {"base64": GARBAGE}}]}, 422, "row 1, input 'image'"),
    ({"rows": [{"text": "a"}], "text": "b"}, 422, "body"),
    ([{"text": "a"}], 422, "body"),
    ("text", 422, "body"),
    (None, 422, "body"),
    (17, 422, "body"),
]

# (raw body, content type, status, what the detail must name)
RAW_CORPUS: list[tuple[bytes, str | None, int, str]] = [
    (b"", "application/json", 422, "body"),
    (b"{not json", "application/json", 422, "body"),
    (b"\xff\xfe{", "application/json", 422, "body"),
    (b"[" * 50_000, "application/json", 422, "body"),
    (json.dumps({"text": "a"}).encode(), "text/plain", 415, "body"),
    (json.dumps({"text": "a"}).encode(), "application/xml", 415, "body"),
    (json.dumps({"text": "a"}).encode(), None, 415, "body"),
    (b"", None, 415, "body"),
    (b"garbage", "multipart/form-data; boundary=xyz", 400, "body"),
    (b"garbage", "multipart/form-data", 400, "body"),
    (b"colour=red", "application/x-www-form-urlencoded", 422, "row 0, input 'colour'"),
    (b"image=images/1.png", "application/x-www-form-urlencoded", 422, "row 0, input 'image'"),
    (b"text=a&text=b", "application/x-www-form-urlencoded", 422, "row 0, input 'text'"),
    (b"", "application/x-www-form-urlencoded", 422, "row 0"),
    (json.dumps({"text": "a" * TOO_LARGE}).encode(), "application/json", 413, "body"),
]


@pytest.fixture(scope="module")
def client():
    app = create_app(FakePredictor(), max_batch=4, max_wait_ms=1, max_upload_mb=LIMIT_MB)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _check(response: Any, status: int, field: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and field in detail, detail
    # no path of the server's: neither its scratch folder nor the temporary directory it lies in
    assert "mmcli-serve-" not in detail and tempfile.gettempdir() not in detail, detail


@pytest.mark.parametrize("payload,status,field", JSON_CORPUS, ids=range(len(JSON_CORPUS)))
def test_bad_json_requests_are_4xx_naming_the_field(client, payload, status, field):
    _check(client.post("/predict", content=json.dumps(payload), headers={"content-type": "application/json"}), status, field)


@pytest.mark.parametrize("body,kind,status,field", RAW_CORPUS, ids=range(len(RAW_CORPUS)))
def test_bad_raw_bodies_are_4xx_naming_the_field(client, body, kind, status, field):
    headers = {"content-type": kind} if kind else {}
    _check(client.post("/predict", content=body, headers=headers), status, field)


def test_bad_multipart_uploads_are_4xx_naming_the_field(client):
    png = base64.b64decode(PNG)
    cases = [
        ({"files": {"image": ("x.p@g", png)}}, 422, "row 0, input 'image'"),
        ({"files": {"image": ("photo.png~", png)}}, 422, "row 0, input 'image'"),
        ({"files": [("image", ("a.png", png)), ("image", ("b.png", png))]}, 422, "row 0, input 'image'"),
        ({"files": {"text": ("t.txt", b"hello")}}, 422, "row 0, input 'text'"),
        ({"files": {"image": ("x.png", b"")}}, 422, "row 0, input 'image'"),
        ({"files": {"image": ("x.png", b"not a picture")}}, 422, "row 0, input 'image'"),
        ({"files": {"colour": ("x.png", png)}}, 422, "row 0, input 'colour'"),
        ({"files": {"image": ("x.png", b"\0" * TOO_LARGE)}}, 413, "body"),
    ]
    for kwargs, status, field in cases:
        _check(client.post("/predict", **kwargs), status, field)


def test_a_body_sent_in_chunks_is_refused_once_over_the_limit(client):
    def chunks():
        for _ in range(TOO_LARGE // 1024 + 1):
            yield b"a" * 1024

    _check(client.post("/predict", content=chunks(), headers={"content-type": "application/json"}), 413, "body")


def test_good_requests_are_answered_and_a_bad_row_is_named_without_server_paths(client):
    response = client.post("/predict", json={"image": {"base64": PNG, "suffix": ".PNG"}, "text": "red"})
    assert response.status_code == 200 and response.json()["predictions"] == [{"scene": {"label": "circle"}}]
    # base64 as `base64 FILE` writes it, wrapped in lines
    wrapped = "\n".join(PNG[i:i + 76] for i in range(0, len(PNG), 76))
    assert client.post("/predict", json={"image": {"base64": wrapped}}).status_code == 200
    response = client.post("/predict", files={"image": ("shape.png", base64.b64decode(PNG))}, data={"text": "red"})
    assert response.status_code == 200, response.text

    response = client.post("/predict", json={"rows": [{"text": "a"}, {"image": {"base64": GARBAGE}}]})
    assert response.status_code == 200
    first, second = response.json()["predictions"]
    assert "scene" in first
    assert second["error"] == "row 1, input 'image': not an image (unrecognised format): the uploaded file"
    assert client.get("/health").json()["max_upload_mb"] == LIMIT_MB


def test_the_media_root_accepts_paths_inside_it_only(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "bad.png").write_bytes(b"not a picture")
    app = create_app(FakePredictor(), max_batch=4, max_wait_ms=1, media_root=tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        _check(client.post("/predict", json={"image": "../outside.png"}), 422, "row 0, input 'image'")
        # the error names the path as the client gave it, not where the server keeps it
        response = client.post("/predict", json={"image": "images/bad.png"})
        _check(response, 422, "row 0, input 'image'")
        assert response.json()["detail"].endswith(": images/bad.png") and str(tmp_path) not in response.text
