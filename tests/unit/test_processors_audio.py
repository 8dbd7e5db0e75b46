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


def _chirp(tmp_path: Path, name: str, seconds: float, gain: float) -> str:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    wave = gain * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(tmp_path / name, wave.astype(np.float32), rate, subtype="FLOAT")
    return name


def _decoded(tmp_path: Path, name: str, **settings) -> np.ndarray:
    out = AudioProcessor(AudioConfig(**settings), "snd").decode(name, tmp_path)
    return out["snd"].astype(np.float32), out["snd_mask"]


def test_per_file_normalisation_standardises_each_clip_over_its_real_frames(tmp_path: Path) -> None:
    loud, quiet = _chirp(tmp_path, "loud.wav", 0.6, 0.9), _chirp(tmp_path, "quiet.wav", 0.6, 0.05)
    for mode, axis in (("per_file", None), ("per_file_per_band", 1)):
        feats, mask = _decoded(tmp_path, loud, normalization=mode)
        real = feats[:, mask]
        assert np.allclose(real.mean(axis=axis), 0, atol=2e-2) and np.allclose(real.std(axis=axis), 1, atol=2e-2)
        assert not feats[:, ~mask].any()  # padding stays 0
    # per clip: the gain (a constant offset in log-mel) is gone
    a, _ = _decoded(tmp_path, loud, normalization="per_file")
    b, _ = _decoded(tmp_path, quiet, normalization="per_file")
    assert np.abs(a - b).mean() < 0.5 * np.abs(_decoded(tmp_path, loud)[0] - _decoded(tmp_path, quiet)[0]).mean()


def test_per_band_statistics_are_fitted_per_band_and_read_by_the_encoder(tmp_path: Path) -> None:
    import torch

    from mmcli.models.encoders.audio import AudioCnnConfig, AudioCnnEncoder

    proc = AudioProcessor(AudioConfig(normalization="per_band"), "snd")
    rows = [proc.decode(_chirp(tmp_path, f"c{i}.wav", 0.4 + 0.2 * i, 0.2 + 0.3 * i), tmp_path) for i in range(3)]
    proc.fit({"snd": np.stack([r["snd"] for r in rows]), "snd_mask": np.stack([r["snd_mask"] for r in rows])})
    spec = json.loads(json.dumps(proc.spec()))
    assert len(spec["mean"]) == len(spec["std"]) == 32 and len(set(np.round(spec["mean"], 3))) > 1
    encoder = AudioCnnEncoder(AudioCnnConfig(), spec, hidden_size=8)
    assert encoder.mean.shape == (32, 1)
    out = encoder(torch.from_numpy(np.stack([r["snd"] for r in rows])), torch.from_numpy(np.stack([r["snd_mask"] for r in rows])))
    assert out.pooled.shape == (3, 8) and torch.isfinite(out.pooled).all()


def test_decibels_with_top_db_window_length_and_preemphasis(tmp_path: Path) -> None:
    name = _chirp(tmp_path, "c.wav", 1.0, 0.5)
    db, _ = _decoded(tmp_path, name, scale="db", top_db=40.0)
    assert db.max() - db.min() <= 40.0 + 0.1  # floored top_db below the clip's peak
    log, _ = _decoded(tmp_path, name)
    # log(mel) and decibels are the same curve up to scale: 10 log10(x) = (10 / ln 10) ln(x) where not floored
    floor = db.max() - 40.0
    kept = db > floor + 1
    assert np.allclose(db[kept], 10 / np.log(10) * log[kept], atol=0.3)
    assert not np.allclose(_decoded(tmp_path, name, win_length=256)[0], log)
    assert not np.allclose(_decoded(tmp_path, name, preemphasis=0.97)[0], log)
    with pytest.raises(ValueError, match="win_length"):
        AudioConfig(n_fft=256, win_length=512)
