"""The built-in `shapes` dataset: deterministic, decodable, labelled as documented."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmcli.data.synthetic import DATASETS, make_dataset
from mmcli.data.synthetic.shapes import COLOR_WORDS, COLUMNS, PITCHES, SHAPES, draw_factors
from mmcli.errors import MmcliError

SIZE = 40
SAMPLE_FILES = ("manifest.csv", "images/00003.png", "audio/00007.wav", "video/00011.mp4")


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
