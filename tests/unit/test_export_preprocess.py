"""The preprocessing an export ships (mmcli_preprocess.py, issue 23 item 10) gives the arrays mmcli's own
processors give: images, video frames and token ids exactly, audio features within float16 rounding, for
the processors' settings (resampling, log/dB/MFCC, per-file statistics, pre-emphasis, window length)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from mmcli.workflows import export_preprocess as module
from mmcli.workflows.export import audio_excess as module_difference

ALLOWED = {"__future__", "json", "math", "os", "pathlib", "typing", "numpy", "PIL", "soundfile", "av", "tokenizers"}


def test_the_module_imports_neither_torch_nor_mmcli():
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= ALLOWED, imported - ALLOWED


def _processor(modality: str, name: str = "x", **settings):
    from mmcli.registries import PROCESSORS

    cls = PROCESSORS.get(modality)
    return cls(PROCESSORS._entries[modality][1](**settings), name)


def _spec(processor, fit: dict) -> dict:
    processor.fit(fit)
    return processor.spec()


def test_images_are_read_exactly_as_the_image_processor_reads_them(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    files = {"rgb.png": Image.fromarray(pixels), "rgba.png": Image.fromarray(pixels).convert("RGBA"),
             "palette.png": Image.fromarray(pixels).convert("P"), "photo.jpg": Image.fromarray(pixels),
             "deep.png": Image.fromarray(rng.integers(0, 65535, (30, 20), dtype=np.uint16))}  # 16-bit grayscale
    for name, image in files.items():
        image.save(tmp_path / name)
    for size, channels in ((32, 3), (16, 1), (50, 3)):
        processor = _processor("image", size=size, channels=channels)
        for name in files:
            expected = processor.decode(name, tmp_path)["x"]
            assert np.array_equal(module.read_image(tmp_path / name, processor.config.model_dump()), expected), name


def _wav(path: Path, seconds: float, rate: int, channels: int) -> None:
    import soundfile

    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    soundfile.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate, subtype="PCM_16")


@pytest.mark.parametrize("settings", [
    {}, {"scale": "db"}, {"features": "mfcc"}, {"features": "mfcc", "mfcc_log_mels": True, "n_mfcc": 13},
    {"normalization": "per_file_per_band", "preemphasis": 0.97}, {"normalization": "per_file", "win_length": 400},
    {"n_mels": 40, "hop_length": 160, "n_fft": 400, "duration": 1.5},
])
def test_audio_features_match_the_audio_processor_within_float16_rounding(tmp_path, settings):
    files = {"short-22k-stereo.wav": (0.7, 22050, 2), "long-16k.wav": (1.9, 16000, 1), "8k.wav": (1.0, 8000, 1)}
    for name, shape in files.items():
        _wav(tmp_path / name, *shape)
    processor = _processor("audio", **settings)
    config = processor.config.model_dump()
    for name in files:
        expected = processor.decode(name, tmp_path)
        features, mask = module.audio_features(tmp_path / name, config)
        assert features.dtype == np.float16 and features.shape == expected["x"].shape, name
        assert np.array_equal(mask, expected["x_mask"]), name
        excess = module_difference(features, expected["x"])
        assert excess.max() <= 0, (name, excess.max())
        assert np.abs(features.astype(np.float64) - expected["x"]).mean() < 1e-3, name


def test_resampling_matches_torchaudio():
    import torch
    import torchaudio

    signal = np.random.default_rng(2).standard_normal(12_345).astype(np.float32)
    for rate, wanted in ((22050, 16000), (8000, 16000), (44100, 16000), (48000, 22050)):
        expected = torchaudio.transforms.Resample(rate, wanted)(torch.from_numpy(signal)[None])[0].numpy()
        produced = module.resample(signal, rate, wanted)
        assert produced.shape == expected.shape and np.abs(produced - expected).max() < 1e-4, (rate, wanted)


def test_video_frames_are_sampled_and_resized_as_the_video_processor_does(tmp_path):
    import av

    rng = np.random.default_rng(3)
    path = tmp_path / "clip.mp4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for _ in range(13):
            frame = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    for settings in ({"num_frames": 4, "size": 16}, {"num_frames": 20, "size": 24, "channels": 1}):
        processor = _processor("video", **settings)
        expected = processor.decode("clip.mp4", tmp_path)
        spec = {"modality": "video", "config": processor.config.model_dump()}
        row = module.Preprocessor({"inputs": {"x": spec}}).row({"x": "clip.mp4"}, tmp_path)
        assert np.array_equal(row["x"], expected["x"]) and np.array_equal(row["x_mask"], expected["x_mask"])


@pytest.mark.parametrize("tokenizer", ["word", "wordpiece", None])  # None: the default
def test_texts_are_tokenised_as_the_text_processor_does(tokenizer):
    settings = {"max_length": 8, "vocab_size": 60} | ({"tokenizer": tokenizer} if tokenizer else {})
    processor = _processor("text", **settings)
    train = ["A red circle, moving left!", "two  green squares", "an unseen-word salad of things", "the end"]
    spec = _spec(processor, {"x": [processor.decode(text, Path("."))["x"] for text in train]})
    texts = ["A red circle", "Completely   unseen WORDS here, and then some more words than fit", "42"]
    expected = processor.transform({"x": [processor.decode(text, Path("."))["x"] for text in texts]})
    preprocessor = module.Preprocessor({"inputs": {"x": spec}, "model_inputs": [{"name": "x", "dtype": "int64"}]})
    batch = preprocessor.batch([{"x": text} for text in texts] + [{}])
    assert batch["x"].dtype == np.int64
    assert np.array_equal(batch["x"][:3], expected["x"]) and np.array_equal(batch["x_mask"][:3], expected["x_mask"])
    assert not batch["x_mask"][3].any() and (batch["x"][3] == spec["pad_id"]).all()  # missing: all padding
