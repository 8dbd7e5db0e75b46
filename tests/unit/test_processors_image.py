from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmcli.data.processors.base import MediaError
from mmcli.data.processors.image import ImageConfig, ImageProcessor
from mmcli.registries import PROCESSORS


def _write(tmp_path: Path, name: str, mode: str, size: tuple[int, int] = (40, 20)) -> str:
    rng = np.random.default_rng(0)
    bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, size=(size[1], size[0], bands), dtype=np.uint8)
    Image.fromarray(data.squeeze(-1) if bands == 1 else data, mode=mode).save(tmp_path / name)
    return name


def test_registered() -> None:
    assert PROCESSORS.get("image") is ImageProcessor


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
@pytest.mark.parametrize("channels", [1, 3])
def test_decode_any_mode(tmp_path: Path, mode: str, channels: int) -> None:
    name = _write(tmp_path, f"a_{mode}.png", mode)
    proc = ImageProcessor(ImageConfig(size=16, channels=channels), "img")
    out = proc.decode(name, tmp_path)
    assert out["img"].shape == (channels, 16, 16) and out["img"].dtype == np.uint8
    assert out["img_mask"].tolist() == [True]
    missing = proc.missing()
    assert missing["img"].shape == (channels, 16, 16) and not missing["img"].any()
    assert missing["img_mask"].tolist() == [False]


def test_constant_colour_survives_resize(tmp_path: Path) -> None:
    Image.new("RGB", (50, 30), (10, 200, 30)).save(tmp_path / "c.png")
    out = ImageProcessor(ImageConfig(size=8), "x").decode("c.png", tmp_path)["x"]
    assert out[:, 4, 4].tolist() == [10, 200, 30]


def test_bad_inputs(tmp_path: Path) -> None:
    proc = ImageProcessor(ImageConfig(), "x")
    (tmp_path / "images").mkdir()
    with pytest.raises(MediaError, match="image file not found: images/3.png"):
        proc.decode("images/3.png", tmp_path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        proc.decode("empty.png", tmp_path)
    (tmp_path / "text.png").write_text("this is not an image")
    with pytest.raises(MediaError, match="not an image"):
        proc.decode("text.png", tmp_path)
    outside = tmp_path.parent / "outside.png"
    Image.new("RGB", (4, 4)).save(outside)
    with pytest.raises(MediaError, match="escapes"):
        proc.decode("../outside.png", tmp_path)
    with pytest.raises(MediaError, match="escapes"):
        proc.decode(str(outside), tmp_path)
    with pytest.raises(MediaError, match="empty image path"):
        proc.decode(None, tmp_path)


def test_truncated_png(tmp_path: Path) -> None:
    _write(tmp_path, "full.png", "RGB", (64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError):
        ImageProcessor(ImageConfig(), "x").decode("cut.png", tmp_path)


def test_decompression_bomb_rejected_before_decoding(tmp_path: Path) -> None:
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    proc = ImageProcessor(ImageConfig(max_pixels=10_000), "x")
    with pytest.raises(MediaError, match="too large: 300x300"):
        proc.decode("big.png", tmp_path)


def test_fit_and_spec_round_trip(tmp_path: Path) -> None:
    proc = ImageProcessor(ImageConfig(size=4), "x")
    with pytest.raises(RuntimeError):
        proc.spec()
    x = np.zeros((3, 3, 4, 4), dtype=np.uint8)
    x[0, 0] = 255  # red channel of the first image all 1.0
    x[2] = 255  # a missing row (mask False) must be ignored
    proc.fit({"x": x, "x_mask": np.array([[True], [True], [False]])})
    spec = json.loads(json.dumps(proc.spec()))
    assert spec["channels"] == 3 and spec["size"] == 4
    assert spec["mean"] == pytest.approx([0.5, 0.0, 0.0])
    assert spec["std"] == pytest.approx([0.5, 1e-3, 1e-3])
    other = ImageProcessor(ImageConfig(), "x")
    other.load_spec(spec)
    assert other.spec() == spec
    _write(tmp_path, "a.png", "RGB")
    np.testing.assert_array_equal(other.decode("a.png", tmp_path)["x"], proc.decode("a.png", tmp_path)["x"])
    cols = {"x": x, "x_mask": np.ones((3, 1), bool)}
    np.testing.assert_array_equal(other.transform(cols)["x"], proc.transform(cols)["x"])


def test_features_match_decoded(tmp_path: Path) -> None:
    import datasets

    _write(tmp_path, "a.png", "RGB")
    proc = ImageProcessor(ImageConfig(size=8), "x")
    proc.fit({"x": np.zeros((0, 3, 8, 8), np.uint8), "x_mask": np.zeros((0, 1), bool)})
    assert proc.spec()["mean"] == [0.0, 0.0, 0.0]
    rows = [proc.decode("a.png", tmp_path), proc.missing()]
    ds = datasets.Dataset.from_list(rows, features=datasets.Features(proc.decoded_features()))
    # fit accepts datasets Columns (the preprocessing step passes them, upcast by the numpy format).
    proc.fit({k: ds.with_format("numpy")[k] for k in ("x", "x_mask")})
    expected = rows[0]["x"].astype(np.float64).mean(axis=(1, 2)) / 255
    assert proc.spec()["mean"] == pytest.approx(expected.tolist())
    # dtype=None keeps the stored dtypes (the numpy formatter otherwise upcasts to int64/float32).
    ds = ds.with_format("numpy", dtype=None)
    batch = ds[:]
    assert batch["x"].shape == (2, 3, 8, 8) and batch["x"].dtype == np.uint8
    assert batch["x_mask"].tolist() == [[True], [False]]
