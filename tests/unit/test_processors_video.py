from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmcli.data.processors.base import MediaError
from mmcli.data.processors.video import VideoConfig, VideoProcessor, sample_indices
from mmcli.registries import PROCESSORS


def _write_mp4(path: Path, frames: int, size: tuple[int, int] = (64, 48), faststart: bool = False) -> None:
    """Frame i is a flat grey of level 20 * i, so the sampled frames can be identified."""
    import av

    options = {"movflags": "faststart"} if faststart else {}  # faststart: the index (moov) comes first
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size[1], size[0], 3), (20 * i) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_registered() -> None:
    assert PROCESSORS.get("video") is VideoProcessor


def test_sample_indices() -> None:
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(10, 5) == [1, 3, 5, 7, 9]
    assert sample_indices(8, 8) == list(range(8))


@pytest.mark.parametrize("channels", [1, 3])
def test_decode_samples_evenly(tmp_path: Path, channels: int) -> None:
    _write_mp4(tmp_path / "v.mp4", 10)
    proc = VideoProcessor(VideoConfig(num_frames=5, size=16, channels=channels), "vid")
    out = proc.decode("v.mp4", tmp_path)
    assert out["vid"].shape == (5, channels, 16, 16) and out["vid"].dtype == np.uint8
    assert out["vid_mask"].tolist() == [True] * 5
    levels = out["vid"][:, 0, 8, 8].astype(int)
    assert np.abs(levels - 20 * np.array([1, 3, 5, 7, 9])).max() <= 6  # lossy codec


def test_short_video_is_padded(tmp_path: Path) -> None:
    _write_mp4(tmp_path / "v.mp4", 3)
    out = VideoProcessor(VideoConfig(num_frames=8, size=8), "vid").decode("v.mp4", tmp_path)
    assert out["vid_mask"].tolist() == [True] * 3 + [False] * 5
    assert not out["vid"][3:].any()


def test_bad_files(tmp_path: Path) -> None:
    proc = VideoProcessor(VideoConfig(), "vid")
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(MediaError, match="video"):
        proc.decode("junk.mp4", tmp_path)
    _write_mp4(tmp_path / "ok.mp4", 4, faststart=True)
    data = (tmp_path / "ok.mp4").read_bytes()
    # Header only: the index declares 4 frames but the media data is gone; PyAV decodes nothing.
    (tmp_path / "head.mp4").write_bytes(data[: data.find(b"mdat") + 4])
    with pytest.raises(MediaError, match="video has no frames: head.mp4"):
        proc.decode("head.mp4", tmp_path)
    (tmp_path / "cut.mp4").write_bytes(data[:40])  # cut inside the header: no usable stream
    with pytest.raises(MediaError, match="no video stream"):
        proc.decode("cut.mp4", tmp_path)
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        proc.decode("zero.mp4", tmp_path)
    with pytest.raises(MediaError, match="video file not found: a/b.mp4"):
        proc.decode("a/b.mp4", tmp_path)
    with pytest.raises(MediaError, match="escapes"):
        proc.decode("../ok.mp4", tmp_path)


def test_fit_spec_round_trip(tmp_path: Path) -> None:
    _write_mp4(tmp_path / "v.mp4", 6)
    proc = VideoProcessor(VideoConfig(num_frames=4, size=8), "vid")
    rows = [proc.decode("v.mp4", tmp_path), proc.missing()]
    train = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    proc.fit(train)
    spec = json.loads(json.dumps(proc.spec()))
    real = train["vid"][train["vid_mask"]].astype(np.float64) / 255
    assert spec["num_frames"] == 4 and spec["channels"] == 3 and spec["size"] == 8
    assert spec["mean"] == pytest.approx(real.mean(axis=(0, 2, 3)).tolist())
    other = VideoProcessor(VideoConfig(), "vid")
    other.load_spec(spec)
    assert other.spec() == spec
    np.testing.assert_array_equal(other.decode("v.mp4", tmp_path)["vid"], rows[0]["vid"])


def test_features(tmp_path: Path) -> None:
    import datasets

    _write_mp4(tmp_path / "v.mp4", 2)
    proc = VideoProcessor(VideoConfig(num_frames=3, size=8), "vid")
    ds = datasets.Dataset.from_list([proc.decode("v.mp4", tmp_path)], features=datasets.Features(proc.features()))
    batch = ds.with_format("numpy", dtype=None)[:]
    assert batch["vid"].shape == (1, 3, 3, 8, 8) and batch["vid"].dtype == np.uint8
    assert batch["vid_mask"].tolist() == [[True, True, False]]


def test_a_video_that_decodes_far_fewer_frames_than_it_declares_is_a_bad_row(tmp_path: Path) -> None:
    whole = tmp_path / "whole.mp4"
    _write_mp4(whole, 24, faststart=True)  # the frame count sits at the front, the frames after it
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # 4 of the 24 frames still decode
    processor = VideoProcessor(VideoConfig(num_frames=4, size=16), "v")
    assert processor.decode("whole.mp4", tmp_path)["v_mask"].all()
    with pytest.raises(MediaError, match=r"truncated video .*declares 24 frames, \d+ decode"):
        processor.decode("cut.mp4", tmp_path)
