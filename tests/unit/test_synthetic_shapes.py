"""The built-in `shapes` dataset: deterministic, decodable, labelled as documented."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmcli.data.synthetic import DATASETS, make_dataset
from mmcli.data.synthetic.shapes import (
    COLOR_WORDS, COLORS, COLUMNS, DIRECTIONS, PITCHES, QUESTION_TYPES, QUESTIONS, SHAPES, draw_factors,
    size_word,
)  # fmt: skip
from mmcli.errors import MmcliError

SIZE = 40
SAMPLE_FILES = ("manifest.csv", "images/00003.png", "audio/00007.wav", "video/00011.mp4")
# The columns and media as they were before the question columns were added (size 40, seed 0):
# recipes reproduce their metrics bit for bit only while these stay byte-identical.
OLD_COLUMNS = (
    "id", "split", "text", "image", "audio", "video", "caption",
    "shape", "color", "size", "pitch", "direction", "scene",
)  # fmt: skip
OLD_SHA256 = {
    "manifest.csv": "ab18e1672afa6e37cfbac3c9d4fa2df52ce402edd431b70f5c41d3c48bd356b9",
    "images/00003.png": "8ae05e9efbacb54faf4719386dfa9bae2c4b431fb89ea2c3b61ec6794ddeee9f",
    "audio/00007.wav": "cbf79e9ca6e552caf5335c50a07eabb34547997f64484bbd69b419cdbadb2372",
    "video/00011.mp4": "db1d795c54d0aa2020e2f51dbdc7d6f19a8658317103128e70cbe0fb9792b115",
}
# Every media file of the dataset, hashed as name + content (_content) in sorted path order.
OLD_ALL_MEDIA_SHA256 = "d6152bc3689f34f5ab7c3d9de30772faaa55a3fb7a7b82999c9da18edea4bfdb"


def _content(path: Path) -> bytes:
    """A file's bytes; for a video its decoded frames, because the MP4 stream also carries the encoder
    library's version string, which changes with PyAV releases (18.1.0 -> 18.1.1) while the frames do not."""
    if path.suffix != ".mp4":
        return path.read_bytes()
    import av

    with av.open(str(path)) as container:
        return b"".join(frame.to_ndarray(format="rgb24").tobytes() for frame in container.decode(video=0))


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    summary = make_dataset("shapes", out, size=SIZE, seed=0)
    assert summary["rows"] == SIZE
    assert Path(summary["manifest"]) == out / "manifest.csv"
    assert summary["splits"] == {"train": 32, "validation": 4, "test": 4}
    assert summary["seconds"] >= 0
    return out


@pytest.fixture(scope="module")
def rows(shapes_dir: Path) -> list[dict[str, str]]:
    return read_manifest(shapes_dir / "manifest.csv")


def test_same_seed_same_bytes_with_workers(shapes_dir: Path, tmp_path: Path) -> None:
    # Two workers (spawned processes) must write exactly what one process writes.
    make_dataset("shapes", tmp_path, size=SIZE, seed=0, num_workers=2)
    for name in SAMPLE_FILES:
        assert (tmp_path / name).read_bytes() == (shapes_dir / name).read_bytes(), name


def test_different_seed_gives_different_files(shapes_dir: Path, tmp_path: Path) -> None:
    make_dataset("shapes", tmp_path, size=SIZE, seed=1)
    for name in SAMPLE_FILES:
        assert (tmp_path / name).read_bytes() != (shapes_dir / name).read_bytes(), name


def test_columns_ids_and_relative_paths(shapes_dir: Path, rows: list[dict[str, str]]) -> None:
    with open(shapes_dir / "manifest.csv", encoding="utf-8") as handle:
        assert handle.readline().strip().split(",") == list(COLUMNS)
    assert [row["id"] for row in rows] == [f"shapes-{i:05d}" for i in range(SIZE)]
    for row in rows:
        for column in ("image", "audio", "video"):
            assert not Path(row[column]).is_absolute()
            assert (shapes_dir / row[column]).is_file()


def test_split_proportions(tmp_path: Path) -> None:
    summary = make_dataset("shapes", tmp_path, size=100, seed=3)
    assert summary["splits"] == {"train": 80, "validation": 10, "test": 10}
    splits = [row["split"] for row in read_manifest(tmp_path / "manifest.csv")]
    assert splits[:10] != ["train"] * 10 or splits[-10:] != ["train"] * 10  # shuffled, not blocks


def test_labels_match_the_story(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert row["scene"] == f"{row['shape']}-{row['pitch']}"
        assert row["shape"] in SHAPES and row["pitch"] in PITCHES
        assert 0.35 <= float(row["size"]) <= 0.9
        # The text reveals the color (by a synonym) and nothing else.
        assert any(word in row["text"].lower() for word in COLOR_WORDS[row["color"]])
        for word in (*SHAPES, *PITCHES, row["direction"]):
            assert word not in row["text"].lower()
        assert row["color"] in row["caption"] and row["shape"] in row["caption"]


def test_media_decode(shapes_dir: Path, rows: list[dict[str, str]]) -> None:
    import av
    import soundfile
    from PIL import Image

    modes = set()
    for index, row in enumerate(rows[:12]):
        with Image.open(shapes_dir / row["image"]) as image:
            assert image.size == (64, 64)
            modes.add(image.mode)
        wave, sample_rate = soundfile.read(shapes_dir / row["audio"])
        factors, _ = draw_factors(0, index)
        assert sample_rate == factors.sample_rate
        assert wave.ndim == 1 and 0.6 <= len(wave) / sample_rate <= 1.2
        assert 0.2 < np.abs(wave).max() < 0.7
        with av.open(str(shapes_dir / row["video"])) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == 8 and frames[0].shape == (32, 32, 3)
    assert modes <= {"RGB", "L"}


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(MmcliError) as info:
        make_dataset("nope", tmp_path)
    assert "shapes" in info.value.one_line()
    assert "shapes" in DATASETS and DATASETS["shapes"][1]


def test_import_is_light() -> None:
    code = (
        "import sys, mmcli.data.synthetic as s; s.DATASETS.names(); "
        "print(sorted(m for m in ('torch', 'av', 'soundfile', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


def test_old_columns_and_media_unchanged(shapes_dir: Path, rows: list[dict[str, str]]) -> None:
    # The manifest restricted to the pre-question columns, written as the generator writes it.
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(OLD_COLUMNS)
    writer.writerows([row[column] for column in OLD_COLUMNS] for row in rows)
    assert COLUMNS[: len(OLD_COLUMNS)] == OLD_COLUMNS
    assert hashlib.sha256(buffer.getvalue().encode()).hexdigest() == OLD_SHA256["manifest.csv"]
    for name, digest in OLD_SHA256.items():
        if name != "manifest.csv":
            assert hashlib.sha256(_content(shapes_dir / name)).hexdigest() == digest, name
    media = hashlib.sha256()
    for path in sorted(shapes_dir.rglob("*")):
        if path.is_file() and path.suffix in (".png", ".wav", ".mp4"):
            media.update(path.name.encode())
            media.update(_content(path))
    assert media.hexdigest() == OLD_ALL_MEDIA_SHA256


def test_question_columns(rows: list[dict[str, str]]) -> None:
    assert COLUMNS[-4:] == ("question", "answer", "question_type", "conversation")
    factor_values = {*COLORS, *SHAPES, *PITCHES, *DIRECTIONS, "small", "medium", "large"}
    for row in rows:
        kind = row["question_type"]
        assert row["question"] in QUESTIONS[kind]
        expected = size_word(float(row["size"])) if kind == "size" else row[kind]
        assert row["answer"] == expected
        # The question names no factor value (its answer included): it only says what is asked.
        assert not set(re.findall(r"[a-z]+", row["question"])) & factor_values, row["question"]
    assert {row["question_type"] for row in rows} == set(QUESTION_TYPES)


def test_the_conversation_asks_the_row_question_then_another(rows: list[dict[str, str]]) -> None:
    import json

    for row in rows:
        turns = json.loads(row["conversation"])
        assert [turn["role"] for turn in turns] == ["user", "assistant", "user", "assistant"]
        assert turns[0]["content"] == f"<image><audio><video>\n{row['question']}" and turns[1]["content"] == row["answer"]
        second = next(kind for kind, questions in QUESTIONS.items() if turns[2]["content"] in questions)
        expected = size_word(float(row["size"])) if second == "size" else row[second]
        assert second != row["question_type"] and turns[3]["content"] == expected


def test_question_templates_name_no_answer() -> None:
    # Every template, not only those the 40 rows happen to draw.
    factor_values = {*COLORS, *SHAPES, *PITCHES, *DIRECTIONS, "small", "medium", "large"}
    for templates in QUESTIONS.values():
        assert len(templates) >= 3
        for question in templates:
            assert not set(re.findall(r"[a-z]+", question)) & factor_values, question


def test_spawn_keeps_the_first_children() -> None:
    # The question stream is spawn(5)'s fifth child; the first four must be the old spawn(4).
    for index in range(5):
        four = np.random.default_rng([0, index]).spawn(4)
        five = np.random.default_rng([0, index]).spawn(5)
        for old, new in zip(four, five):
            assert old.bit_generator.state == new.bit_generator.state
