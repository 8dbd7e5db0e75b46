"""mmcli_preprocess: raw files and texts -> the arrays a model exported by ``mmcli export`` takes.

``mmcli export`` writes this file beside the model as ``mmcli_preprocess.py``, with ``preprocessing.json``
(the run's fitted processors). It needs numpy, and Pillow (images, video frames), soundfile (audio), av
(video) and tokenizers (text) for the inputs the model has; not torch, not mmcli. It does what mmcli's own
processors do (``mmcli/data/processors/``): images resized as they are, audio resampled and turned into
log-mel (or MFCC) features, video frames sampled evenly, texts tokenised by the run's tokenizer::

    import onnxruntime
    from mmcli_preprocess import Preprocessor

    pre = Preprocessor("export/preprocessing.json")
    feeds = pre.batch([{"image": "a.png", "audio": "a.wav", "text": "a red circle"}], base_dir="data")
    session = onnxruntime.InferenceSession("export/model.onnx")
    wanted = {arg.name for arg in session.get_inputs()}
    answers = session.run(None, {name: array for name, array in feeds.items() if name in wanted})

An input left out of a row (or None) is missing for that row: its mask is all False, as in training.
``preprocessing.json`` lists the model's inputs (``model_inputs``: name, dtype, shape) and outputs (task
names with their class labels). Audio features match mmcli's (torchaudio's) within float16 rounding.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

FLOAT16_MAX = 65000.0
TRUNCATED = 0.75  # fewer decodable video frames than this share of the declared count: a broken file


class Preprocessor:
    """The processors of ``preprocessing.json``; ``row(values)`` -> arrays of one row, ``batch(rows)`` ->
    arrays with a leading batch axis, in the dtypes the model takes."""

    def __init__(self, spec: str | os.PathLike | dict[str, Any]) -> None:
        if not isinstance(spec, dict):
            spec = json.loads(Path(spec).read_text(encoding="utf-8"))
        self.inputs: dict[str, dict[str, Any]] = spec["inputs"]
        self.model_inputs: list[dict[str, Any]] = spec.get("model_inputs", [])
        self.outputs: list[dict[str, Any]] = spec.get("outputs", [])
        self._tokenizers: dict[str, Any] = {}

    def row(self, values: dict[str, Any], base_dir: str | os.PathLike = ".") -> dict[str, np.ndarray]:
        unknown = sorted(set(values) - set(self.inputs))
        if unknown:
            raise ValueError(f"no input '{unknown[0]}' (inputs: {', '.join(self.inputs)})")
        arrays: dict[str, np.ndarray] = {}
        for name, spec in self.inputs.items():
            value = values.get(name)
            missing = value is None or (isinstance(value, str) and not value.strip())
            reader = getattr(self, f"_{spec['modality']}")
            data, mask = _missing(spec) if missing else reader(name, spec, value, Path(base_dir))
            arrays[name], arrays[f"{name}_mask"] = data, mask
        return arrays

    def batch(self, rows: list[dict[str, Any]], base_dir: str | os.PathLike = ".") -> dict[str, np.ndarray]:
        decoded = [self.row(values, base_dir) for values in rows]
        dtypes = {entry["name"]: entry["dtype"] for entry in self.model_inputs}
        return {key: np.stack([row[key] for row in decoded]).astype(dtypes.get(key, decoded[0][key].dtype))
                for key in decoded[0]}

    def _image(self, name: str, spec: dict[str, Any], value: Any, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        return read_image(_path(value, base_dir), spec["config"]), np.ones(1, dtype=bool)

    def _video(self, name: str, spec: dict[str, Any], value: Any, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        config = spec["config"]
        frames = read_video(_path(value, base_dir), config)
        out = np.zeros((config["num_frames"], config["channels"], config["size"], config["size"]), dtype=np.uint8)
        out[: len(frames)] = np.stack(frames)
        mask = np.zeros(config["num_frames"], dtype=bool)
        mask[: len(frames)] = True
        return out, mask

    def _audio(self, name: str, spec: dict[str, Any], value: Any, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        return audio_features(_path(value, base_dir), spec["config"])

    def _text(self, name: str, spec: dict[str, Any], value: Any, base_dir: Path) -> tuple[np.ndarray, np.ndarray]:
        config = spec["config"]
        text = " ".join(str(value).split())
        text = text.lower() if config.get("lowercase", True) else text
        length, pad = config["max_length"], int(spec.get("pad_id", 0))
        ids = np.full(length, pad, dtype=np.int64)
        mask = np.zeros(length, dtype=bool)
        encoding = self._tokenizer(name, spec).encode(text)
        tokens = encoding.ids[:length]
        ids[: len(tokens)] = tokens
        mask[: len(tokens)] = np.asarray(encoding.attention_mask[:length], dtype=bool)
        return ids, mask

    def _tokenizer(self, name: str, spec: dict[str, Any]) -> Any:
        """The run's tokenizer: [CLS] ... [SEP] (or a Hugging Face tokenizer's own special tokens), cut at
        max_length; padding is done here (pad_id), as mmcli does it."""
        if name not in self._tokenizers:
            from tokenizers import Tokenizer

            if spec.get("tokenizer_json") is None:
                raise ValueError(f"input '{name}': its Hugging Face tokenizer had no tokenizer.json to export; "
                                 "tokenise the text with that tokenizer (input ids, max_length, pad_id)")
            tokenizer = Tokenizer.from_str(spec["tokenizer_json"])
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=spec["config"]["max_length"])
            self._tokenizers[name] = tokenizer
        return self._tokenizers[name]


def _missing(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    config, modality = spec["config"], spec["modality"]
    if modality == "image":
        return np.zeros((config["channels"], config["size"], config["size"]), dtype=np.uint8), np.zeros(1, dtype=bool)
    if modality == "video":
        shape = (config["num_frames"], config["channels"], config["size"], config["size"])
        return np.zeros(shape, dtype=np.uint8), np.zeros(config["num_frames"], dtype=bool)
    if modality == "audio":
        return np.zeros((spec["n_features"], spec["frames"]), dtype=np.float16), np.zeros(spec["frames"], dtype=bool)
    length = config["max_length"]
    return np.full(length, int(spec.get("pad_id", 0)), dtype=np.int64), np.zeros(length, dtype=bool)


def _path(value: Any, base_dir: Path) -> Path:
    path = Path(value) if os.path.isabs(str(value)) else base_dir / str(value).strip()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path


# ---- images and video frames: Pillow, as mmcli/data/processors/base.py and image.py ----

def read_image(path: Path, config: dict[str, Any]) -> np.ndarray:
    """uint8 ``[C, S, S]``: EXIF orientation applied, converted to RGB or L, resized bilinear (antialiased)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft("RGB" if config["channels"] == 3 else "L", (config["size"], config["size"]))
        image.load()
        image = ImageOps.exif_transpose(image)
        return pil_to_array(image, config["size"], config["channels"])


def pil_to_array(image: Any, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    image = image.convert("RGB" if channels == 3 else "L")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None, :, :].copy() if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _to_8bit(image: Any) -> Any:
    """16-bit and float images scaled to 8-bit "L" (Pillow's own conversion would clip)."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        array = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and array.size and array.max() <= 1.0 else 65535.0
        if image.mode == "I" and array.size and array.max() <= 255:
            top = 255.0
        array = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(array, mode="L")
    return image


def sample_indices(total: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly over ``total`` frames (segment centres); all if fewer."""
    if total <= wanted:
        return list(range(total))
    return [int((i + 0.5) * total / wanted) for i in range(wanted)]


def read_video(path: Path, config: dict[str, Any]) -> list[np.ndarray]:
    """``num_frames`` frames sampled evenly, each uint8 ``[C, S, S]``."""
    import av

    with av.open(str(path)) as container:
        declared = container.streams.video[0].frames or 0
    if declared > 0:
        wanted = sample_indices(declared, config["num_frames"])
        seen, kept = _decode_frames(path, config, set(wanted), wanted[-1])
        if seen > wanted[-1]:
            return [kept[i] for i in wanted]
    seen, kept = _decode_frames(path, config, None, None)
    if seen == 0 or (declared > 0 and seen < TRUNCATED * declared):
        raise ValueError(f"{path}: a broken video ({seen} frames decode)")
    return [kept[i] for i in sample_indices(seen, config["num_frames"])]


def _decode_frames(path: Path, config: dict[str, Any], keep: set[int] | None, last: int | None) -> tuple[int, dict]:
    import av

    kept: dict[int, np.ndarray] = {}
    seen = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if keep is None or seen in keep:
                kept[seen] = pil_to_array(frame.to_image(), config["size"], config["channels"])
            seen += 1
            if last is not None and seen > last:
                break
    return seen, kept


# ---- audio: soundfile, then torchaudio's Resample, MelSpectrogram, AmplitudeToDB and MFCC in numpy ----

def audio_features(path: Path, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """float16 ``[F, T]`` features and the ``[T]`` mask of frames whose centre lies on real audio."""
    import soundfile

    rate_wanted, hop = config["sample_rate"], config["hop_length"]
    samples = int(round(rate_wanted * config["duration"]))
    info = soundfile.info(str(path))
    frames = min(info.frames, math.ceil(config["duration"] * info.samplerate) + 1)
    data, rate = soundfile.read(str(path), frames=frames, dtype="float32", always_2d=True)
    signal = np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    if rate != rate_wanted:
        signal = resample(signal, int(rate), rate_wanted)
    real = min(len(signal), samples)
    padded = np.zeros(samples, dtype=np.float32)
    padded[:real] = signal[:real]
    if config.get("preemphasis"):
        padded[1:real] = padded[1:real] - np.float32(config["preemphasis"]) * padded[: real - 1]
    features = _features(padded, config)
    count = features.shape[1]
    mask = np.zeros(count, dtype=bool)
    mask[: count if real >= samples else math.ceil(real / hop)] = True
    normalization = config.get("normalization", "global")
    if normalization.startswith("per_file"):
        features = _standardise(features, mask, per_band=normalization.endswith("per_band"))
    return np.clip(features, -FLOAT16_MAX, FLOAT16_MAX).astype(np.float16), mask


def resample(signal: np.ndarray, rate: int, wanted: int, width_zeros: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """torchaudio's default resampling (windowed sinc, Hann window, 6 zero crossings, rolloff 0.99)."""
    gcd = math.gcd(rate, wanted)
    orig, new = rate // gcd, wanted // gcd
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base
    t = np.clip(t, -width_zeros, width_zeros)
    window = np.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        kernels = np.where(t == 0, 1.0, np.sin(t) / t)
    kernels = (kernels * window * (base / orig)).astype(np.float32)  # [new, 2 * width + orig]
    padded = np.pad(signal, (width, width + orig))
    steps = (len(padded) - kernels.shape[1]) // orig + 1
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::orig][:steps]
    out = (windows @ kernels.T).reshape(-1)  # [steps, new] -> interleaved
    return out[: math.ceil(new * len(signal) / orig)].astype(np.float32)


def _features(signal: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    power = _mel_power(signal, config)
    if config.get("features", "log_mel") == "mfcc":
        mels = np.log(power + 1e-6) if config.get("mfcc_log_mels") else _to_db(power, 80.0)
        return (_dct(config["n_mfcc"], config["n_mels"]) @ mels).astype(np.float32)
    if config.get("scale", "log") == "db":
        return _to_db(power, config.get("top_db"))
    return np.log(power + 1e-6).astype(np.float32)


def _mel_power(signal: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """``[n_mels, T]`` mel power spectrogram: periodic Hann window, centred frames (reflect padding)."""
    n_fft, hop = config["n_fft"], config["hop_length"]
    win = config.get("win_length") or n_fft
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    left = (n_fft - win) // 2
    window = np.pad(window, (left, n_fft - win - left))
    padded = np.pad(signal.astype(np.float64), n_fft // 2, mode="reflect")
    count = 1 + (len(padded) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:count]
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [T, n_fft // 2 + 1]
    return (power @ _mel_filters(n_fft // 2 + 1, config["n_mels"], config["sample_rate"])).T


def _mel_filters(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """``[n_freqs, n_mels]`` triangular HTK-mel filters from 0 Hz to Nyquist, unnormalised."""
    def to_mel(hz: Any) -> Any:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    freqs = np.linspace(0, sample_rate // 2, n_freqs)
    points = 700.0 * (10.0 ** (np.linspace(to_mel(0.0), to_mel(float(sample_rate // 2)), n_mels + 2) / 2595.0) - 1.0)
    gaps = np.diff(points)
    slopes = points[None, :] - freqs[:, None]
    down, up = -slopes[:, :-2] / gaps[:-1], slopes[:, 2:] / gaps[1:]
    return np.maximum(0.0, np.minimum(down, up))


def _to_db(power: np.ndarray, top_db: float | None) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    return (np.maximum(db, db.max() - top_db) if top_db is not None else db).astype(np.float32)


def _dct(n_mfcc: int, n_mels: int) -> np.ndarray:
    """``[n_mfcc, n_mels]`` orthonormal DCT-II."""
    dct = np.cos(np.pi / n_mels * (np.arange(n_mels)[None, :] + 0.5) * np.arange(n_mfcc)[:, None])
    dct[0] *= 1.0 / math.sqrt(2.0)
    return dct * math.sqrt(2.0 / n_mels)


def _standardise(features: np.ndarray, mask: np.ndarray, per_band: bool) -> np.ndarray:
    real = features[:, mask] if mask.any() else features
    axis = 1 if per_band else None
    mean = real.mean(axis=axis, keepdims=True)
    std = np.maximum(real.std(axis=axis, keepdims=True), 1e-3)
    return ((features - mean) / std) * mask.astype(features.dtype)
