"""An exported model fed from raw files without mmcli (issue 23, item 10): the export folder's
mmcli_preprocess.py and preprocessing.json turn media files and texts into the ONNX model's inputs, in a
Python that cannot import mmcli or torch, and the answers equal 'mmcli predict' on the same files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from .conftest import run_cli

FEED = """
import json, sys

class Refuse:  # what the exported folder must do without
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mmcli", "torch", "torchaudio", "torchvision", "transformers", "datasets"):
            raise ImportError(f"{name} is not available here")
        return None

sys.meta_path.insert(0, Refuse())
folder, rows, base = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
sys.path.insert(0, folder)
import onnxruntime
from mmcli_preprocess import Preprocessor

feeds = Preprocessor(folder + "/preprocessing.json").batch(rows, base)
session = onnxruntime.InferenceSession(folder + "/model.onnx", providers=["CPUExecutionProvider"])
wanted = {arg.name for arg in session.get_inputs()}
outputs = session.run(None, {name: array for name, array in feeds.items() if name in wanted})
print(json.dumps({arg.name: value.tolist() for arg, value in zip(session.get_outputs(), outputs)}))
"""


def _exported_answers(folder: Path, rows: list[dict], base: Path) -> dict[str, list]:
    done = subprocess.run([sys.executable, "-I", "-c", FEED, str(folder), json.dumps(rows), str(base)],
                          capture_output=True, text=True, cwd=folder, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _as_arrays(predictions: list[dict], outputs: list[dict]) -> dict[str, np.ndarray]:
    arrays = {}
    for output in outputs:
        name, labels = output["name"], output["labels"]
        if labels:  # classification: probabilities in the exported order
            arrays[name] = np.array([[row[name]["probabilities"][label] for label in labels] for row in predictions])
        else:
            arrays[name] = np.array([row[name]["value"] for row in predictions])
    return arrays


def test_the_exported_model_answers_raw_files_as_predict_does_without_mmcli(small_workspace, small_run, tmp_path):
    folder = tmp_path / "exported"
    result = run_cli("export", str(small_run), "-o", str(folder / "model.onnx"), "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    description = result.json()
    assert description["preprocessing"]["check"]["rows"] == 4  # checked on rows of the split at export time
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "model.onnx.json", "preprocessing.json", "mmcli_preprocess.py"}
    spec = json.loads((folder / "preprocessing.json").read_text())
    assert set(spec["inputs"]) == {"text", "image", "audio", "video"} and "tasks" not in spec

    shapes = small_workspace / "data" / "shapes"
    with open(shapes / "manifest.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == "test"][:6]
    columns = ["id", "text", "image", "audio", "video"]
    with open(shapes / "export-rows.csv", "w", newline="") as handle:  # beside the media: paths stay relative
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    predicted = run_cli("predict", str(small_run), "--manifest", "data/shapes/export-rows.csv", "--json", cwd=small_workspace)
    assert predicted.code == 0, predicted.stderr[-2000:]
    raw = [{name: row[name] for name in ("text", "image", "audio", "video")} for row in rows]
    expected = _as_arrays(predicted.json()["predictions"], description["outputs"])
    produced = _exported_answers(folder, raw, shapes)
    for name, values in expected.items():
        assert np.abs(np.array(produced[name]) - values).max() <= 1e-3, name
    assert not np.allclose(expected["scene"][0], expected["scene"][1])  # rows differ: not a constant model

    # one sample with the text and the video missing, as 'mmcli predict --image --audio' takes it
    sample = run_cli("predict", str(small_run), "--image", str(shapes / rows[0]["image"]),
                     "--audio", str(shapes / rows[0]["audio"]), "--json", cwd=small_workspace)
    assert sample.code == 0, sample.stderr[-2000:]
    expected = _as_arrays(sample.json()["predictions"], description["outputs"])
    # alone (no row of the batch has a video or a text) and batched with a complete row
    for batch in ([{"image": rows[0]["image"], "audio": rows[0]["audio"]}],
                  [{"image": rows[0]["image"], "audio": rows[0]["audio"]}, raw[1]]):
        produced = _exported_answers(folder, batch, shapes)
        for name, values in expected.items():
            assert np.abs(np.array(produced[name][:1]) - values).max() <= 1e-3, name
