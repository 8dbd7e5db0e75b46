"""The applications through the real CLI (in-process) on small generated data: captioning, question
answering, event detection, retrieval and zero-shot; their readable and JSON output; and their bad
inputs, each one clear line with exit 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcli.cli.app import app
from mmcli.data.synthetic import make_dataset

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
RUNNER = CliRunner()
SHORT = ["training.epochs=1", "training.batch_size=16", "training.eval_batch_size=64"]


def invoke(*args: str):
    return RUNNER.invoke(app, list(args))


def ok(result) -> dict:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is True
    return payload


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "internal error" not in errors[0]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("applications")
    make_dataset("shapes", root / "shapes", size=80, seed=3)
    make_dataset("shapes-events", root / "events", size=60, seed=3)
    return root


def recipe_args(root: Path, name: str, data: str = "shapes") -> list[str]:
    return [str(RECIPES / f"{name}.yaml"), f"data.manifest={root / data / 'manifest.csv'}",
            f"data.cache_dir={root / 'cache'}", f"output_dir={root / 'runs'}", *SHORT]


@pytest.fixture(scope="module")
def captioning(root: Path) -> Path:
    ok(invoke("finetune", *recipe_args(root, "captioning"), "--json", "--quiet"))
    return root / "runs" / "captioning"


@pytest.fixture(scope="module")
def retrieval(root: Path) -> Path:
    ok(invoke("finetune", *recipe_args(root, "retrieval"), "--json", "--quiet"))
    return root / "runs" / "retrieval"


def test_a_captioning_run_generates_captions_shown_as_a_table_and_as_json(root: Path, captioning: Path) -> None:
    metrics = json.loads((captioning / "metrics.json").read_text())["test"]["caption"]
    assert {"bleu", "chrf", "rouge_l", "cider", "vqa_accuracy"} <= set(metrics) and metrics["count"] == 8
    media = {"--image": "images/00001.png", "--audio": "audio/00001.wav", "--video": "video/00001.mp4"}
    args = [arg for flag, path in media.items() for arg in (flag, str(root / "shapes" / path))]
    shown = invoke("predict", str(captioning), *args, "--num-beams", "2")
    assert shown.exit_code == 0, shown.output
    assert "caption" in shown.stdout and "┃" in shown.stdout  # a table
    answer = ok(invoke("predict", str(captioning), *args, "--json"))["predictions"][0]["caption"]
    assert isinstance(answer["text"], str)
    assert not (captioning / "predictions.jsonl").exists()  # a file only where asked


def test_a_generation_run_is_not_exported_and_decoding_options_need_a_text_task(root: Path, captioning: Path,
                                                                                retrieval: Path) -> None:
    one_line_error(invoke("export", str(captioning)), "task 'caption' (text)", "generation")
    one_line_error(invoke("predict", str(retrieval), "--text", "a red circle", "--num-beams", "3"),
                   "--num-beams", "no task that generates text")


def test_retrieval_by_text_and_by_media_with_a_table_and_json(root: Path, retrieval: Path) -> None:
    found = ok(invoke("retrieve", str(retrieval), "--query-text", "a small red circle with a low tone moving up",
                      "--top-k", "3", "--json"))
    assert [row["rank"] for row in found["results"]] == [1, 2, 3]
    assert found["gallery"]["input"] == "fused" and found["results"][0]["score"] >= found["results"][1]["score"]
    media = ["--query-image", str(root / "shapes/images/00002.png"), "--query-audio", str(root / "shapes/audio/00002.wav")]
    shown = invoke("retrieve", str(retrieval), *media, "--top-k", "2")
    assert shown.exit_code == 0, shown.output
    assert "moving" in shown.stdout  # captions beside their rank


def test_evaluate_scores_retrieval_both_ways_and_zero_shot(root: Path, retrieval: Path) -> None:
    result = ok(invoke("evaluate", str(retrieval), "--retrieval", "--zero-shot", "shape", "--prompt", "a {}", "--json"))
    scores = result["metrics"]["retrieval"]["clip"]
    for key in ("recall@1_fused_to_caption", "recall@10_caption_to_fused", "median_rank", "mrr"):
        assert key in scores
    assert scores["gallery"]["fused_to_caption"] <= 8  # identical captions are one gallery entry
    zero_shot = result["metrics"]["zero_shot"]
    assert zero_shot["classes"] == ["circle", "square", "triangle"] and zero_shot["count"] == 8
    assert 0 <= zero_shot["accuracy"] <= 1 and zero_shot["chance"] == pytest.approx(1 / 3)


def test_a_gallery_of_texts_is_encoded_and_searched(root: Path, retrieval: Path) -> None:
    texts = root / "captions.txt"
    texts.write_text("a small red circle with a low tone moving up\na large blue square with a high tone moving left\n")
    gallery = root / "captions.safetensors"
    assert ok(invoke("encode", str(retrieval), "--texts", str(texts), "-o", str(gallery), "--json"))["rows"] == 2
    found = ok(invoke("retrieve", str(retrieval), "--query-image", str(root / "shapes/images/00003.png"),
                      "--gallery", str(gallery), "--top-k", "2", "--json"))
    assert {row["source"] for row in found["results"]} == set(texts.read_text().splitlines())


def test_retrieval_bad_inputs_are_one_line_each(root: Path, retrieval: Path, captioning: Path) -> None:
    one_line_error(invoke("retrieve", str(retrieval), "--query-text", "a red circle", "--top-k", "500"),
                   "--top-k 500 is larger than the gallery")
    one_line_error(invoke("retrieve", str(captioning), "--query-text", "a red circle"), "no retrieval objective")
    one_line_error(invoke("retrieve", str(retrieval), "--query-text", "x", "--gallery", str(root / "nothing.safetensors")),
                   "no such gallery file")
    one_line_error(invoke("evaluate", str(captioning), "--retrieval"), "--retrieval", "no retrieval objective")
    one_line_error(invoke("retrieve", str(retrieval)), "nothing to search with")


def _edited_manifest(source: Path, target: Path, row: int, column: str, value: str) -> Path:
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows[row][column] = value
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target


def test_application_data_errors_name_the_row(root: Path) -> None:
    shapes, events = root / "shapes" / "manifest.csv", root / "events" / "manifest.csv"
    no_image = _edited_manifest(shapes, root / "shapes" / "no-image.csv", 4, "image", "")
    one_line_error(invoke("preprocess", *recipe_args(root, "vqa"), f"data.manifest={no_image}"),
                   "row 4", "image", "empty image path")
    empty_caption = _edited_manifest(shapes, root / "shapes" / "empty-caption.csv", 6, "caption", "")
    one_line_error(invoke("preprocess", *recipe_args(root, "captioning"), f"data.manifest={empty_caption}"),
                   "row 6", "no usable label in column 'caption'")
    with events.open(newline="", encoding="utf-8") as handle:  # a label the train split never had
        held_out = next(i for i, row in enumerate(csv.DictReader(handle)) if row["split"] == "test")
    unknown = _edited_manifest(events, root / "events" / "unknown-event.csv", held_out, "events", "beep;siren")
    one_line_error(invoke("preprocess", *recipe_args(root, "event-detection", "events"), f"data.manifest={unknown}"),
                   f"row {held_out}", "unknown label 'siren'")
