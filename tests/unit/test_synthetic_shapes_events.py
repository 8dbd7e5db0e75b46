"""The built-in `shapes-events` dataset: deterministic, decodable, and its events really happen."""

from __future__ import annotations

import csv
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from mmcli.data.synthetic import DATASETS, make_dataset
from mmcli.data.synthetic.shapes_events import (
    AUDIO_EVENTS, COLUMNS, EVENTS, NO_EVENTS, VIDEO_EVENTS, draw_events, format_events, parse_events,
)  # fmt: skip

SIZE = 40
BRIGHT = 150  # gray level above the noisy background (<= ~0.45 * 255), below the white squares


def read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def media_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def events_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes-events")
    summary = make_dataset("shapes-events", out, size=SIZE, seed=0)
    assert summary["rows"] == SIZE
    assert summary["splits"] == {"train": 32, "validation": 4, "test": 4}
    return out


@pytest.fixture(scope="module")
def rows(events_dir: Path) -> list[dict[str, str]]:
    rows = read_manifest(events_dir / "manifest.csv")
    for row in rows:
        row["set"] = parse_events(row["events"])  # type: ignore[assignment]
    return rows


@pytest.fixture(scope="module")
def audio(events_dir: Path, rows: list[dict[str, str]]) -> list[np.ndarray]:
    import soundfile

    waves = []
    for row in rows:
        info = soundfile.info(events_dir / row["audio"])
        layout = (info.samplerate, info.frames, info.channels, info.subtype)
        assert layout == (16000, 16000, 1, "PCM_16")
        waves.append(soundfile.read(events_dir / row["audio"])[0])
    return waves


@pytest.fixture(scope="module")
def video(events_dir: Path, rows: list[dict[str, str]]) -> list[np.ndarray]:
    """Per row: a bool [8, 32, 32] mask of the bright (white square) pixels of the decoded frames."""
    import av

    masks = []
    for row in rows:
        with av.open(str(events_dir / row["video"])) as container:
            assert container.streams.video[0].codec_context.name == "mpeg4"
            frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        assert frames.shape == (8, 32, 32, 3)
        masks.append(frames.mean(axis=3) > BRIGHT)
    return masks


def spectrogram(wave: np.ndarray, n: int = 512, hop: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Power [frames, bins] of 32 ms windows, and the bins' frequencies in Hz (16 kHz audio)."""
    windows = np.lib.stride_tricks.sliding_window_view(wave, n)[::hop] * np.hanning(n)
    return np.abs(np.fft.rfft(windows, axis=1)) ** 2, np.fft.rfftfreq(n, 1 / 16000)


def test_same_bytes_with_one_and_two_workers(events_dir: Path, tmp_path: Path) -> None:
    make_dataset("shapes-events", tmp_path / "two", size=SIZE, seed=0, num_workers=2)
    assert media_files(tmp_path / "two") == media_files(events_dir)
    make_dataset("shapes-events", tmp_path / "other", size=SIZE, seed=1)
    for name in ("audio/00003.wav", "video/00003.mp4"):
        assert (tmp_path / "other" / name).read_bytes() != (events_dir / name).read_bytes(), name


def test_rows_do_not_depend_on_size(events_dir: Path, tmp_path: Path) -> None:
    make_dataset("shapes-events", tmp_path, size=10, seed=0)
    small = read_manifest(tmp_path / "manifest.csv")
    for row, big in zip(small, read_manifest(events_dir / "manifest.csv")):
        assert row["events"] == big["events"]
        for column in ("audio", "video"):
            assert (tmp_path / row[column]).read_bytes() == (events_dir / big[column]).read_bytes()


def test_columns_and_events_format(events_dir: Path, rows: list[dict[str, str]]) -> None:
    with open(events_dir / "manifest.csv", encoding="utf-8") as handle:
        assert handle.readline().strip().split(",") == list(COLUMNS)
    assert [row["id"] for row in rows] == [f"shapes-events-{i:05d}" for i in range(SIZE)]
    for row in rows:
        names = row["set"]
        assert names <= set(EVENTS)
        # Names in the fixed EVENTS order, ";"-joined; the empty set is the literal "none".
        assert row["events"] == (";".join(e for e in EVENTS if e in names) or NO_EVENTS)
        assert not {"object moves left", "object moves right"} <= names  # mutually exclusive
    for name in EVENTS:
        assert any(name in row["set"] for row in rows), name
    assert any(row["set"] & set(AUDIO_EVENTS) and row["set"] & set(VIDEO_EVENTS) for row in rows)
    assert format_events(()) == NO_EVENTS and parse_events(NO_EVENTS) == set()


def test_events_are_independent() -> None:
    # Drawing events is cheap (no media), so check frequencies on many rows.
    drawn = [set(draw_events(0, i)[0]) for i in range(4000)]
    rate = {name: np.mean([name in d for d in drawn]) for name in EVENTS}
    assert all(0.3 <= p <= 0.4 for p in rate.values()), rate
    for a, b in combinations(EVENTS, 2):
        joint = np.mean([a in d and b in d for d in drawn])
        if {a, b} == {"object moves left", "object moves right"}:
            assert joint == 0
        else:
            assert abs(joint - rate[a] * rate[b]) < 0.03, (a, b)
    assert any(not d for d in drawn)  # some clips have no event at all


def test_audio_events_are_audible(rows: list[dict[str, str]], audio: list[np.ndarray]) -> None:
    checked = {"beep": 0, "noise burst": 0, "tone rises": 0, "tone falls": 0}
    for row, wave in zip(rows, audio):
        power, hz = spectrogram(wave)
        # beep: some 32 ms window is mostly 1-2 kHz; nothing else puts most of a window there.
        beep_share = (power[:, (hz >= 950) & (hz <= 2050)].sum(1) / power.sum(1)).max()
        assert (beep_share > 0.5) == ("beep" in row["set"]), (row["id"], beep_share)
        checked["beep"] += 1
        # noise burst: the only sound with energy above 3 kHz
        high = power[:, hz >= 3000].sum(1).max()
        assert (high > 50) == ("noise burst" in row["set"]), (row["id"], high)
        checked["noise burst"] += 1
        # A lone sweep: its peak frequency in 380-1000 Hz moves up (rises) or down (falls) in time.
        if len(row["set"] & set(AUDIO_EVENTS)) == 1 and row["set"] & {"tone rises", "tone falls"}:
            (name,) = row["set"] & set(AUDIO_EVENTS)
            band = power[:, (hz >= 380) & (hz <= 1000)]
            loud = band.sum(1) > 0.3 * band.sum(1).max()
            peak = hz[(hz >= 380) & (hz <= 1000)][band.argmax(1)]
            slope = np.polyfit(np.nonzero(loud)[0], peak[loud], 1)[0]
            assert (slope > 5) if name == "tone rises" else (slope < -5), (row["id"], slope)
            checked[name] += 1
    assert all(checked.values()), checked


def test_video_events_are_visible(rows: list[dict[str, str]], video: list[np.ndarray]) -> None:
    checked = dict.fromkeys(VIDEO_EVENTS, 0)
    for row, bright in zip(rows, video):
        counts = bright.sum(axis=(1, 2))  # a 6x6 square is 36 bright pixels
        # second object: up to two squares' worth of bright pixels in some frame
        assert (counts.max() > 54) == ("second object appears" in row["set"]), row["id"]
        checked["second object appears"] += "second object appears" in row["set"]
        # flash: the (only) square vanishes in some frame; it never does otherwise
        if "second object appears" not in row["set"]:
            assert (counts.min() < 5) == ("object flashes" in row["set"]), row["id"]
            checked["object flashes"] += "object flashes" in row["set"]
            # motion: the bright centroid moves left / right / not at all across visible frames
            xs = [np.nonzero(mask)[1].mean() for mask in bright if mask.sum() > 18]
            shift = xs[-1] - xs[0]
            if "object moves left" in row["set"]:
                assert shift < -8 and np.all(np.diff(xs) < 0), row["id"]
                checked["object moves left"] += 1
            elif "object moves right" in row["set"]:
                assert shift > 8 and np.all(np.diff(xs) > 0), row["id"]
                checked["object moves right"] += 1
            else:
                assert np.ptp(xs) < 1, row["id"]
    assert all(checked.values()), checked


def test_registered_and_listed_by_the_cli(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmcli.cli.app import app

    assert "shapes-events" in DATASETS and DATASETS["shapes-events"][1]
    listed = CliRunner().invoke(app, ["datasets", "ls"])
    assert listed.exit_code == 0 and "shapes-events:" in listed.output
    command = ["datasets", "make", "shapes-events", str(tmp_path / "x"), "--size", "12"]
    made = CliRunner().invoke(app, command)
    assert made.exit_code == 0, made.output
    assert len(read_manifest(tmp_path / "x" / "manifest.csv")) == 12
