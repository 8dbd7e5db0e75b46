"""Audio input: a path -> float16 log-mel or MFCC ``[F, T]`` plus a ``[T]`` real-frame mask."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from mmcli.data.processors.base import (FixedShapeColumns, MediaError, _chunks, config_from_spec, media_path,
                                       require_fitted)
from mmcli.registries import PROCESSORS
from mmcli.settings import Settings

_FLOAT16_MAX = 65000.0


class AudioConfig(Settings):
    sample_rate: int = Field(16000, ge=1000, description="audio is resampled to this rate (Hz)")
    duration: float = Field(1.0, gt=0, description="seconds kept per clip: longer clips are cropped, shorter padded")
    features: Literal["log_mel", "mfcc"] = "log_mel"
    n_mels: int = Field(32, ge=1)
    n_mfcc: int = Field(20, ge=1)
    hop_length: int = Field(256, ge=1)
    n_fft: int = Field(512, ge=2)
    win_length: int | None = Field(None, ge=2, description="analysis window in samples (default: n_fft); at most n_fft")
    scale: Literal["log", "db"] = Field("log", description="log_mel values: log(mel + 1e-6), or decibels "
                                                         "(10 log10, floored top_db below each clip's peak)")
    top_db: float | None = Field(80.0, gt=0, description="scale: db only; null: no floor")
    preemphasis: float = Field(0.0, ge=0, lt=1, description="pre-emphasis y[t] = x[t] - a x[t-1] before the "
                                                            "spectrogram (0: off; 0.97 is usual for speech)")
    mfcc_log_mels: bool = Field(False, description="mfcc only: DCT of log-mel (true) or of decibels (torchaudio's default)")
    normalization: Literal["global", "per_band", "per_file", "per_file_per_band"] = Field(
        "global", description="standardise features: global (one mean/std fitted on train), per_band (one per "
                              "mel band or coefficient, fitted on train), per_file (each clip by its own mean/std), "
                              "per_file_per_band (each clip, each band)")

    @model_validator(mode="after")
    def _check(self) -> "AudioConfig":
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError("n_mfcc must be <= n_mels")
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError("win_length must be <= n_fft")
        return self

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration))

    @property
    def num_frames(self) -> int:
        # torchaudio's spectrograms pad by n_fft // 2 on both sides (center=True).
        return 1 + self.num_samples // self.hop_length

    @property
    def num_features(self) -> int:
        return self.n_mels if self.features == "log_mel" else self.n_mfcc


@PROCESSORS.register("audio", AudioConfig)
class AudioProcessor(FixedShapeColumns):
    """Columns: ``name`` float16 ``[F, T]``, ``name_mask`` bool ``[T]``. The encoder normalises."""

    transforms = False  # transform() is the identity: nothing to run after fit
    array_dtype = "float16"

    def __init__(self, config: AudioConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.mask_name = f"{name}_mask"
        self.mean: float | None = None
        self.std: float | None = None
        self._feature_fn: Any = None  # built lazily: torchaudio is slow to import
        self._resamplers: dict[int, Any] = {}  # original rate -> Resample (kernel computed once)

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild the cached torch modules; keeps pickles (and dataset fingerprints) small.
        return {**self.__dict__, "_feature_fn": None, "_resamplers": {}}

    def decode(self, value: Any, base_dir: Path) -> dict[str, np.ndarray]:
        import torch

        shown = str(value).strip() if value is not None else ""
        path = media_path(value, base_dir, "audio")
        wave, rate = read_audio(path, self.config.duration, shown)
        cfg = self.config
        signal = torch.from_numpy(wave)[None, :]
        if rate != cfg.sample_rate:
            signal = self._resampler(rate)(signal)
        real = min(signal.shape[1], cfg.num_samples)
        padded = torch.zeros(1, cfg.num_samples)
        padded[:, :real] = signal[:, :real]
        if cfg.preemphasis:
            import torchaudio.functional

            padded[:, :real] = torchaudio.functional.preemphasis(padded[:, :real], cfg.preemphasis)
        with torch.no_grad():
            feats = self._features()(padded)[0]  # [F, T]
        mask = np.zeros(cfg.num_frames, dtype=bool)
        # A frame is real when its centre (t * hop) lies on real audio; no padding -> all real.
        mask[: cfg.num_frames if real >= cfg.num_samples else math.ceil(real / cfg.hop_length)] = True
        if cfg.normalization.startswith("per_file"):
            feats = _standardise_clip(feats, torch.from_numpy(mask), per_band=cfg.normalization.endswith("per_band"))
        feats = feats.clamp(-_FLOAT16_MAX, _FLOAT16_MAX).numpy().astype(np.float16)
        return {self.name: feats, self.mask_name: mask}

    def array_shape(self) -> tuple[int, ...]:
        return self.config.num_features, self.config.num_frames

    def mask_length(self) -> int:
        return self.config.num_frames

    def fit(self, train: dict[str, Any]) -> None:
        """Mean/std of the features over real frames of the train rows: one of each, or one per band
        (``normalization: per_band``). Clips standardised one by one get 0 and 1."""
        per_band = self.config.normalization == "per_band"
        if self.config.normalization.startswith("per_file"):
            self.mean, self.std = 0.0, 1.0
            return
        total = total_sq = 0.0
        count = 0
        for data, keep in _chunks(train[self.name], train[self.mask_name]):
            if data.size == 0:
                continue
            values = data.astype(np.float64).transpose(0, 2, 1)[keep]  # [M real frames, F]
            total = total + (values.sum(axis=0) if per_band else float(values.sum()))
            total_sq = total_sq + ((values**2).sum(axis=0) if per_band else float((values**2).sum()))
            count += values.shape[0] if per_band else values.size
        if count == 0:
            self.mean, self.std = 0.0, 1.0
            return
        mean = np.asarray(total) / count
        std = np.maximum(np.sqrt(np.maximum(np.asarray(total_sq) / count - mean**2, 0.0)), 1e-3)
        self.mean, self.std = (mean.tolist(), std.tolist()) if per_band else (float(mean), float(std))

    def transform(self, columns: dict[str, Any]) -> dict[str, Any]:
        return columns

    def spec(self) -> dict[str, Any]:
        require_fitted(self.mean, self.name)
        return {
            "modality": "audio",
            "config": self.config.model_dump(),
            "n_features": self.config.num_features,
            "frames": self.config.num_frames,
            "mean": self.mean,
            "std": self.std,
        }

    def load_spec(self, spec: dict[str, Any]) -> None:
        self.config = config_from_spec(AudioConfig, spec)
        self.mean, self.std = spec["mean"], spec["std"]  # floats, or one per band
        self._feature_fn, self._resamplers = None, {}

    def _features(self) -> Any:
        if self._feature_fn is None:
            import torch
            import torchaudio

            cfg = self.config
            mel = {"n_fft": cfg.n_fft, "hop_length": cfg.hop_length, "n_mels": cfg.n_mels}
            if cfg.win_length is not None:
                mel["win_length"] = cfg.win_length
            if cfg.features == "mfcc":
                self._feature_fn = torchaudio.transforms.MFCC(cfg.sample_rate, n_mfcc=cfg.n_mfcc, melkwargs=mel,
                                                              log_mels=cfg.mfcc_log_mels)
            elif cfg.scale == "db":
                spectrogram = torchaudio.transforms.MelSpectrogram(cfg.sample_rate, **mel)
                to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=cfg.top_db)
                self._feature_fn = lambda x: to_db(spectrogram(x))
            else:
                spectrogram = torchaudio.transforms.MelSpectrogram(cfg.sample_rate, **mel)
                self._feature_fn = lambda x: torch.log(spectrogram(x) + 1e-6)
        return self._feature_fn

    def _resampler(self, rate: int) -> Any:
        if rate not in self._resamplers:
            import torchaudio

            self._resamplers[rate] = torchaudio.transforms.Resample(rate, self.config.sample_rate)
        return self._resamplers[rate]


def _standardise_clip(feats: Any, mask: Any, per_band: bool) -> Any:
    """``feats [F, T]`` standardised over the clip's real frames: by one mean/std, or one per band."""
    real = feats[:, mask] if bool(mask.any()) else feats
    axis = (1,) if per_band else (0, 1)
    mean = real.mean(dim=axis, keepdim=True)
    std = real.std(dim=axis, keepdim=True, unbiased=False).clamp(min=1e-3)
    return ((feats - mean) / std) * mask.to(feats.dtype)  # padded frames stay 0


def read_audio(path: Path, duration: float, shown: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples (only the first ``duration`` seconds are read) and the file's rate."""
    import soundfile as sf

    check_wav_truncation(path, shown)
    try:
        info = sf.info(str(path))
        wanted = min(info.frames, math.ceil(duration * info.samplerate) + 1)
        data, rate = sf.read(str(path), frames=wanted, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        raise MediaError(f"cannot decode audio {shown}: {_short(err)}") from err
    if info.frames == 0 or data.shape[0] == 0:
        raise MediaError(f"audio has no samples: {shown}")
    if data.shape[0] < wanted:
        raise MediaError(f"truncated audio: header says {info.frames} frames, could read only {data.shape[0]}: {shown}")
    if not np.isfinite(data).all():
        raise MediaError(f"audio contains NaN or infinite samples: {shown}")
    return np.ascontiguousarray(data.mean(axis=1)), int(rate)


def check_wav_truncation(path: Path, shown: str) -> None:
    """Compare a WAV's declared data size with the bytes present.

    libsndfile silently clamps its frame count to what the file holds, so a WAV cut short
    (an interrupted copy) would otherwise decode as shorter audio without any error.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not a plain RIFF/WAVE file (RF64, FLAC, OGG...): soundfile's own checks apply
        block_align = 0
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            start = handle.tell()
            if chunk_id == b"fmt " and chunk_size >= 14:
                fmt = handle.read(14)
                if len(fmt) < 14:  # cut inside the header: unpacking would raise struct.error
                    raise MediaError(f"truncated WAV: the file ends inside its header: {shown}")
                block_align = struct.unpack("<H", fmt[12:14])[0]
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF are "unknown size" placeholders written by streaming encoders.
                if chunk_size in (0, 0xFFFFFFFF) or block_align == 0:
                    return
                present = size - start
                if present < chunk_size:
                    raise MediaError(
                        f"truncated WAV: header says {chunk_size // block_align} frames, "
                        f"file holds {present // block_align}: {shown}"
                    )
                return
            handle.seek(start + chunk_size + (chunk_size & 1))  # chunks are word-aligned


def _short(err: Exception) -> str:
    return " ".join(str(err).split())[:200]
