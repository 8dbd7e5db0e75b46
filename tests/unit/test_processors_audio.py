from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmcli.data.processors.audio import AudioConfig, AudioProcessor
from mmcli.data.processors.base import MediaError
from mmcli.registries import PROCESSORS


def _tone(tmp_path: Path, name: str, rate: int, seconds: float, channels: int = 1) -> str:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([wave] * channels, axis=1) if channels > 1 else wave
    sf.write(tmp_path / name, data.astype(np.float32), rate, subtype="PCM_16")
    return name


def test_registered() -> None:
    assert PROCESSORS.get("audio") is AudioProcessor


@pytest.mark.parametrize("features,f", [("log_mel", 32), ("mfcc", 20)])
def test_full_clip_shapes(tmp_path: Path, features: str, f: int) -> None:
    name = _tone(tmp_path, "a.wav", 16000, 1.5, channels=2)  # longer than duration: cropped
    proc = AudioProcessor(AudioConfig(features=features), "snd")
    out = proc.decode(name, tmp_path)
    frames = 1 + 16000 // 256
    assert out["snd"].shape == (f, frames) and out["snd"].dtype == np.float16
    assert np.isfinite(out["snd"].astype(np.float32)).all()
    assert out["snd_mask"].dtype == bool and out["snd_mask"].all()
    missing = proc.missing()
    assert missing["snd"].shape == (f, frames) and not missing["snd_mask"].any()


@pytest.mark.parametrize("rate", [8000, 16000, 22050])
def test_resampling_gives_expected_real_frames(tmp_path: Path, rate: int) -> None:
    # 0.5 s is 8000 samples at 16 kHz whatever the file's rate: ceil(8000 / 256) = 32 real frames.
    name = _tone(tmp_path, f"a{rate}.wav", rate, 0.5)
    out = AudioProcessor(AudioConfig(), "snd").decode(name, tmp_path)
    assert out["snd"].shape == (32, 63)
    assert out["snd_mask"].sum() == math.ceil(8000 / 256)
    assert out["snd_mask"][:32].all() and not out["snd_mask"][32:].any()


def test_silence_is_valid(tmp_path: Path) -> None:
    sf.write(tmp_path / "s.wav", np.zeros(16000, dtype=np.float32), 16000)
    out = AudioProcessor(AudioConfig(), "snd").decode("s.wav", tmp_path)
    assert out["snd_mask"].all()
    assert np.allclose(out["snd"].astype(np.float32), math.log(1e-6), atol=0.05)


def test_truncated_wav(tmp_path: Path) -> None:
    _tone(tmp_path, "full.wav", 16000, 1.0)
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 16000])  # header + 8000 of 16000 frames (16-bit)
    proc = AudioProcessor(AudioConfig(), "snd")
    with pytest.raises(MediaError, match="truncated WAV: header says 16000 frames, file holds 8000"):
        proc.decode("cut.wav", tmp_path)
    (tmp_path / "half.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated WAV"):
        proc.decode("half.wav", tmp_path)


def test_bad_files(tmp_path: Path) -> None:
    proc = AudioProcessor(AudioConfig(), "snd")
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        proc.decode("zero.wav", tmp_path)
    with pytest.raises(MediaError, match="audio file not found: nope.wav"):
        proc.decode("nope.wav", tmp_path)
    (tmp_path / "junk.wav").write_bytes(b"definitely not audio" * 10)
    with pytest.raises(MediaError, match="cannot decode audio"):
        proc.decode("junk.wav", tmp_path)
    sf.write(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(MediaError, match="no samples"):
        proc.decode("nothing.wav", tmp_path)
    (tmp_path / "sub").mkdir()
    _tone(tmp_path, "ok.wav", 16000, 0.1)
    with pytest.raises(MediaError, match="escapes"):
        proc.decode("../" + tmp_path.name + "x/ok.wav", tmp_path)
    assert proc.decode("sub/../ok.wav", tmp_path)["snd_mask"].any()  # stays inside: fine


def test_fit_spec_round_trip(tmp_path: Path) -> None:
    proc = AudioProcessor(AudioConfig(features="mfcc", n_mels=24, n_mfcc=12, duration=0.5), "snd")
    rows = [proc.decode(_tone(tmp_path, f"{i}.wav", 16000, 0.2 + 0.2 * i), tmp_path) for i in range(2)]
    rows.append(proc.missing())
    train = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    proc.fit(train)
    real = train["snd"].astype(np.float64).transpose(0, 2, 1)[train["snd_mask"]]
    spec = json.loads(json.dumps(proc.spec()))
    assert spec["n_features"] == 12 and spec["frames"] == 1 + 8000 // 256
    assert spec["mean"] == pytest.approx(real.mean()) and spec["std"] == pytest.approx(real.std())
    other = AudioProcessor(AudioConfig(), "snd")
    other.load_spec(spec)
    assert other.spec() == spec
    np.testing.assert_array_equal(other.decode("1.wav", tmp_path)["snd"], proc.decode("1.wav", tmp_path)["snd"])
    assert other.transform(train)["snd"] is train["snd"]


def test_features_and_pickle(tmp_path: Path) -> None:
    import pickle

    import datasets

    proc = AudioProcessor(AudioConfig(duration=0.25), "snd")
    row = proc.decode(_tone(tmp_path, "a.wav", 8000, 0.25), tmp_path)
    clone = pickle.loads(pickle.dumps(proc))  # cached torch transforms are dropped, then rebuilt
    np.testing.assert_array_equal(clone.decode("a.wav", tmp_path)["snd"], row["snd"])
    ds = datasets.Dataset.from_list([row, proc.missing()], features=datasets.Features(proc.features()))
    batch = ds.with_format("numpy", dtype=None)[:]
    assert batch["snd"].dtype == np.float16 and batch["snd"].shape == (2, 32, 1 + 4000 // 256)
    assert batch["snd_mask"].shape == (2, 1 + 4000 // 256)


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        AudioConfig(features="mfcc", n_mels=10, n_mfcc=20)
