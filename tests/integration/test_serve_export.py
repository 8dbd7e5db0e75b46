"""mmcli serve under concurrent load on 127.0.0.1, and mmcli export checked against the run's model."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from mmcli.serving.loadgen import load_test, post_json

from .conftest import run_cli


def _start_server(small_workspace, small_run, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "mmcli", "serve", str(small_run), "--port", "0", "--json", *extra],
                               cwd=small_workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    for line in process.stderr:  # the ready line names the port the OS chose
        if line.startswith("{") and "listening" in line:
            return process, json.loads(line)["url"]
        assert time.monotonic() < deadline and process.poll() is None, line
    pytest.fail(f"the server ended before listening: {process.wait()}")


def test_serve_answers_concurrent_requests_in_batches_without_errors(small_workspace, small_run, tmp_path):
    shapes = small_workspace / "data" / "shapes"
    process, url = _start_server(small_workspace, small_run, "--max-batch", "16", "--max-wait-ms", "20")
    try:
        with urllib_get(url + "/health") as health:
            assert health["status"] == "ok" and set(health["inputs"]) == {"text", "image", "audio", "video"}
        payloads = []
        for i in range(8):
            image = base64.b64encode((shapes / "images" / f"{i:05d}.png").read_bytes()).decode()
            audio = base64.b64encode((shapes / "audio" / f"{i:05d}.wav").read_bytes()).decode()
            payloads.append({"image": {"base64": image}, "audio": {"base64": audio}, "text": "it looks crimson"})

        # what the server answers is what predict answers for the same row
        status, body = post_json(url + "/predict", payloads[0])
        direct = run_cli("predict", str(small_run), "--image", str(shapes / "images" / "00000.png"),
                         "--audio", str(shapes / "audio" / "00000.wav"), "--text", "it looks crimson", "--json",
                         cwd=small_workspace)
        expected = direct.json()["predictions"][0]
        assert status == 200
        served = body["predictions"][0]
        assert served["scene"]["label"] == expected["scene"]["label"]
        for label, p in expected["scene"]["probabilities"].items():
            assert served["scene"]["probabilities"][label] == pytest.approx(p, abs=1e-5)

        stats = load_test(url + "/predict", payloads, requests=160, concurrency=16)
        (tmp_path / "load.json").write_text(json.dumps(stats))
        print("load test:", json.dumps(stats))
        assert stats["errors"] == 0, stats["first_errors"]
        assert stats["requests_per_s"] > 0 and 0 < stats["p50_ms"] <= stats["p99_ms"]
        with urllib_get(url + "/health") as health:
            served = health["served"]
        assert served["requests"] == 161 and served["rows"] == 161
        assert 1 < served["largest_batch"] <= 16 and served["batches"] < 161  # concurrent rows shared model calls

        # bad requests: one line each, and the server keeps serving
        status, body = post_json(url + "/predict", {"image": "images/00000.png"})
        assert status == 422 and "--media-root" in body["detail"]
        status, body = post_json(url + "/predict", {"colour": "red"})
        assert status == 422 and "no such input" in body["detail"]
        status, body = post_json(url + "/predict", {"rows": [{"image": {"base64": "aGVsbG8="}}, payloads[1]]})
        assert status == 200 and "error" in body["predictions"][0] and "scene" in body["predictions"][1]
    finally:
        process.terminate()
        out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["stopped_by"] == "SIGTERM" and summary["served"]["requests"] == 162  # the two refused requests never reached the model


def test_serve_refuses_bad_requests_with_a_4xx_naming_the_field(small_workspace, small_run):
    shapes = small_workspace / "data" / "shapes"
    png = base64.b64encode((shapes / "images" / "00000.png").read_bytes()).decode()
    garbage = base64.b64encode(b"hello, not a medium").decode()
    corpus = [  # (body, content type, status, what the detail names)
        ({"image": {"base64": png, "suffix": "/x.png"}}, "application/json", 422, "row 0, input 'image'"),
        ({"image": {"base64": png, "suffix": "/../../x"}}, "application/json", 422, "row 0, input 'image'"),
        ({"image": {"bytes": "abc"}}, "application/json", 422, "row 0, input 'image'"),
        ({"image": {"base64": "é"}}, "application/json", 422, "row 0, input 'image'"),
        ({"image": {"base64": garbage}}, "application/json", 422, "row 0, input 'image'"),
        ({"audio": {"base64": garbage, "suffix": ".wav"}}, "application/json", 422, "row 0, input 'audio'"),
        ({"video": {"base64": garbage}}, "application/json", 422, "row 0, input 'video'"),
        ({"rows": [{"text": "red"}, {"image": {"base64": garbage}}, {"image": {"base64": garbage}}]}, "application/json",
         200, "row 2, input 'image'"),
        ({}, "application/json", 422, "row 0"),
        ({"rows": [1]}, "application/json", 422, "row 0"),
        ({"text": "it looks crimson"}, "text/plain", 415, "body"),
        ({"text": "a" * (2 << 20)}, "application/json", 413, "body"),
    ]
    process, url = _start_server(small_workspace, small_run, "--max-upload-mb", "1")
    try:
        for payload, kind, status, field in corpus:
            request = urllib.request.Request(url + "/predict", data=json.dumps(payload).encode(), method="POST",
                                             headers={"content-type": kind})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    got, body = response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                got, body = error.code, json.loads(error.read())
            detail = body.get("detail") or json.dumps(body["predictions"])
            assert got == status and field in detail, (str(payload)[:80], got, detail)
            assert "mmcli-serve-" not in detail and tempfile.gettempdir() not in detail, detail  # no server path
    finally:
        process.terminate()
        _, err = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in err, err[-3000:]


def test_serve_stops_within_seconds_of_sigterm(small_workspace, small_run):
    process, url = _start_server(small_workspace, small_run)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with urllib_get(url + "/health") as health:
        assert health["status"] == "ok"
    # a client that stalls mid-upload, and one holding an idle connection: neither may hold the server
    stalled = socket.create_connection((host, int(port)), timeout=30)
    stalled.sendall(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                    b"content-length: 1000\r\n\r\n{\"text\": \"it lo")
    idle = socket.create_connection((host, int(port)), timeout=30)
    time.sleep(0.5)
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=8)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"still serving 8 s after SIGTERM: {err[-2000:]}")
    finally:
        stalled.close()
        idle.close()
    print(f"stopped {time.monotonic() - began:.1f} s after SIGTERM")
    assert process.returncode == 0, err[-2000:]
    assert json.loads(out)["stopped_by"] == "SIGTERM"


class urllib_get:  # noqa: N801 - a tiny context manager for GET + JSON
    def __init__(self, url: str) -> None:
        import urllib.request

        self.response = urllib.request.urlopen(url, timeout=60)

    def __enter__(self) -> dict:
        return json.loads(self.response.read())

    def __exit__(self, *exc) -> None:
        self.response.close()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_the_run_on_other_rows_and_with_inputs_missing(small_workspace, small_run, tmp_path, fmt):
    target = tmp_path / f"model.{fmt}"
    result = run_cli("export", str(small_run), "--format", fmt, "-o", str(target), "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    description = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert description["check"]["max_abs_difference"] <= 1e-4
    names = [entry["name"] for entry in description["inputs"]]
    outputs = [entry["name"] for entry in description["outputs"]]
    assert outputs == ["scene", "motion", "size"] and len(description["outputs"][0]["labels"]) == 9

    # the run's model on the validation split (the export was traced and checked on test rows), with
    # the image missing on every other row and the audio on every third
    from mmcli.data.loader import split_tensors
    from mmcli.inference.predictor import infer_batch
    from mmcli.workflows.run_dir import open_run, split_dataset

    run = open_run(small_run)
    tensors = split_tensors(split_dataset(run, "validation"), list(run.recipe.inputs), [])
    tensors["image_mask"][::2] = False
    tensors["audio_mask"][::3] = False
    feeds = [tensors[name] for name in names]
    with torch.no_grad():
        _, predictions, _ = infer_batch(run.model, dict(zip(names, feeds)))
    expected = [run.model.tasks[name].readout(predictions[name]).numpy() for name in outputs]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        wanted = {arg.name for arg in session.get_inputs()}
        produced = session.run(outputs, {n: t.numpy() for n, t in zip(names, feeds) if n in wanted})
    else:
        module = torch.jit.load(str(target))
        with torch.no_grad():
            produced = [value.numpy() for value in module(*feeds)]
    for want, got in zip(expected, produced):
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4
    assert not np.allclose(expected[0][0], expected[0][1])  # rows differ: not a constant model

    again = run_cli("export", str(small_run), "--format", fmt, "-o", str(target), cwd=small_workspace)
    assert again.code == 2 and "--overwrite" in again.stderr  # an existing export is never replaced unasked
