"""Default image encoder against a hand-written reference of the same kind, on images whose
positions matter: scikit-learn's handwritten digits (1,797 8x8 images) upsampled to 12x12 and placed
at a random position on a 32x32 grey canvas; the class is the digit and the half it lies in (20
classes), so a model must keep where the strokes are, not only what they look like.

Three models, several seeds, test accuracy (best validation epoch) as JSON:
- ``reference``: a hand-written PyTorch CNN (3 blocks conv 3x3 + BatchNorm + ReLU + max-pool, flatten,
  FC 128, dropout 0.2, linear), Adam 1e-3, batch 64, on the same cached tensors mmcli trains on;
- ``mmcli-default``: the recipe with the default ``cnn`` image encoder (1x1 projection, mean over
  positions) and default training settings but the same epochs, batch and learning rate;
- ``mmcli-flatten``: the same recipe with the reference's architecture written in the recipe
  (blocks, ``pool: flatten``, ``fc_layers: [128]``, ``concat`` without projection, Adam, constant lr).

With ``--modality audio``: spoken words (zero..nine) synthesised with espeak-ng (apt install
espeak-ng) in 60 voices, speeds and pitches each, shifted by up to 0.3 s under background noise at 0-10 dB SNR,
64-band log-mel; the reference is a 1-D CNN (2 blocks
conv 5 + BatchNorm + ReLU + max-pool, max over time, FC 128, dropout 0.2, linear); ``mmcli-fc`` writes
it in the recipe.

Usage: python benchmarks/encoder_defaults.py [--modality image|audio] [--seeds 0 1 2] [--epochs 20] [-o results.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from mmcli.api import Recipe, finetune

BLOCKS = [32, 64, 128]


def make_digits(root: Path, seed: int = 0) -> Path:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    (root / "images").mkdir(parents=True)
    rows = []
    place = np.random.default_rng(seed + 1)
    for rank, index in enumerate(order):
        pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
        glyph = np.asarray(Image.fromarray(pixels).resize((12, 12), Image.BILINEAR))
        canvas = np.zeros((32, 32), dtype=np.uint8)
        top, left = place.integers(0, 21), place.integers(0, 21)
        canvas[top:top + 12, left:left + 12] = glyph
        Image.fromarray(canvas).save(root / "images" / f"{index:04d}.png")
        half = "left" if left + 6 < 16 else "right"
        split = "train" if rank < 0.7 * len(order) else "validation" if rank < 0.85 * len(order) else "test"
        rows.append({"id": str(index), "split": split, "image": f"images/{index:04d}.png",
                     "digit": f"{digits.target[index]}-{half}"})
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VOICES = ["en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland"]
VARIANTS = ["m1", "m3", "f1", "f2"]


def make_words(root: Path, seed: int = 0) -> Path:
    """Ten spoken words, 60 takes each (voice, variant, speed, pitch), 22.05 kHz WAV."""
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True)
    rows = []
    for w, word in enumerate(WORDS):
        for take in range(60):
            voice = f"{VOICES[take % len(VOICES)]}+{VARIANTS[(take // len(VOICES)) % len(VARIANTS)]}"
            path = root / "audio" / f"{word}-{take:02d}.wav"
            subprocess.run(["espeak-ng", "-w", str(path), "-v", voice, "-s", str(int(rng.integers(120, 220))),
                            "-p", str(int(rng.integers(20, 80))), word], check=True, capture_output=True)
            _add_noise(path, rng)
            rows.append({"id": f"{word}-{take:02d}", "audio": f"audio/{path.name}", "word": word})
    order = rng.permutation(len(rows))
    for rank, index in enumerate(order):
        rows[index]["split"] = "train" if rank < 0.7 * len(rows) else "validation" if rank < 0.85 * len(rows) else "test"
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "split", "audio", "word"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "manifest.csv"


def _add_noise(path: Path, rng: np.random.Generator) -> None:
    """Pink-ish background noise at 0-10 dB SNR and a random start within 0.3 s: not a clean-speech task."""
    import soundfile as sf

    wave, rate = sf.read(str(path), dtype="float32")
    wave = np.concatenate([np.zeros(int(rng.uniform(0, 0.3) * rate), dtype=np.float32), wave])
    noise = np.cumsum(rng.standard_normal(wave.size)).astype(np.float32)
    noise -= np.convolve(noise, np.ones(64) / 64, mode="same")  # take out the drift
    snr = rng.uniform(0, 10)
    noise *= np.sqrt(np.mean(wave**2) / max(np.mean(noise**2), 1e-12) / 10 ** (snr / 10))
    sf.write(str(path), np.clip(wave + noise, -1, 1), rate)


INPUT = {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 32, "channels": 1}},
         "audio": {"modality": "audio", "column": "audio",
                   "preprocessing": {"sample_rate": 16000, "duration": 1.0, "features": "log_mel", "n_mels": 64}}}
TARGET = {"image": "digit", "audio": "word"}


def recipe(manifest: Path, work: Path, name: str, seed: int, epochs: int, encoder: dict, extra: dict,
           modality: str = "image") -> dict:
    target = TARGET[modality]
    return {"name": name, "seed": seed, "output_dir": str(work / "runs"),
            "data": {"manifest": str(manifest), "id_column": "id", "cache_dir": str(work / "cache")},
            "inputs": {modality: {**INPUT[modality], "encoder": encoder}},
            "tasks": {target: {"type": "classification", "column": target, **extra.get("task", {})}},
            "model": {"hidden_size": 128, **extra.get("model", {})},
            "training": {"epochs": epochs, "batch_size": 64, "learning_rate": 1e-3, "trackers": [],
                         "monitor": f"{target}.accuracy", **extra.get("training", {})}}


class Reference(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        layers, channels = [], 1
        for out in BLOCKS:
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.2),
                                 nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AudioReference(nn.Module):
    def __init__(self, classes: int, features: int = 64) -> None:
        super().__init__()
        layers, channels = [], features
        for out in (64, 128):
            layers += [nn.Conv1d(channels, out, 5, padding=2, bias=False), nn.BatchNorm1d(out), nn.ReLU(), nn.MaxPool1d(2, ceil_mode=True)]
            channels = out
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(channels, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x).amax(dim=-1))


def reference_accuracy(cache_run: Path, seed: int, epochs: int, modality: str = "image") -> float:
    """The hand-written loop on the cached tensors of a finished mmcli run (identical inputs and splits)."""
    from mmcli.data.loader import split_tensors
    from mmcli.workflows.run_dir import open_run, split_dataset

    run = open_run(cache_run)
    spec = run.preprocessing["inputs"][modality]["spec"]
    target = TARGET[modality]

    def tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        t = split_tensors(split_dataset(run, split), [modality], [target])
        if modality == "image":
            mean, std = torch.tensor(spec["mean"]).view(1, -1, 1, 1), torch.tensor(spec["std"]).view(1, -1, 1, 1)
            return (t["image"].float() / 255 - mean) / std, t[target].long()
        x = (t["audio"].float() - spec["mean"]) / spec["std"]
        return x * t["audio_mask"].unsqueeze(1), t[target].long()  # padded frames 0, as mmcli feeds them

    (x, y), (vx, vy), (tx, ty) = tensors("train"), tensors("validation"), tensors("test")
    torch.manual_seed(seed)
    model = Reference(int(y.max()) + 1) if modality == "image" else AudioReference(int(y.max()) + 1, x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state = -1.0, None
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y))
        for start in range(0, len(y) - 63, 64):
            rows = order[start:start + 64]
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(vx).argmax(1) == vy).float().mean())
        if accuracy > best:
            best, best_state = accuracy, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    with torch.no_grad():
        return float((model(tx).argmax(1) == ty).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=["image", "audio"], default="image")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    flatten_encoder = {"type": "cnn", "blocks": [{"channels": c, "activation": "relu"} for c in BLOCKS],
                       "pool": "flatten", "fc_layers": [128]}
    as_reference = {"model": {"dropout": 0.2, "fusion": {"type": "concat", "projection": "none"}}, "task": {"dropout": 0.0},
                    "training": {"optimizer": "adam", "weight_decay": 0.0, "scheduler": "constant", "warmup_ratio": 0.0,
                                 "grad_clip": None}}
    if args.modality == "image":
        variants = {"mmcli-default": ({"type": "cnn", "channels": BLOCKS}, {}), "mmcli-flatten": (flatten_encoder, as_reference)}
    else:
        fc_encoder = {"type": "cnn", "blocks": [{"channels": c, "kernel": 5, "activation": "relu"} for c in (64, 128)],
                      "pool": "max", "fc_layers": [128]}
        variants = {"mmcli-default": ({"type": "cnn"}, {}), "mmcli-fc": (fc_encoder, as_reference)}
    results: dict[str, list[float]] = {"reference": [], **{name: [] for name in variants}}
    seconds: dict[str, float] = {name: 0.0 for name in results}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        manifest = make_digits(work / "digits") if args.modality == "image" else make_words(work / "words")
        for seed in args.seeds:
            for name, (encoder, extra) in variants.items():
                began = time.perf_counter()
                run = finetune(Recipe.from_dict(recipe(manifest, work, f"{name}-{seed}", seed, args.epochs, encoder, extra,
                                                       args.modality)))
                seconds[name] += time.perf_counter() - began
                results[name].append(run["metrics"]["test"][TARGET[args.modality]]["accuracy"])
            began = time.perf_counter()
            results["reference"].append(reference_accuracy(work / "runs" / f"mmcli-default-{seed}", seed, args.epochs,
                                                           args.modality))
            seconds["reference"] += time.perf_counter() - began
            print(json.dumps({name: values[-1] for name, values in results.items()}))
    summary = {name: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "runs": v,
                      "seconds": round(seconds[name], 1)} for name, v in results.items()}
    dataset = "sklearn digits at a random place on 32x32 grey, class digit x half (20), 70/15/15" \
        if args.modality == "image" else "espeak-ng words zero..nine, 60 takes each, noise at 0-10 dB SNR, 64-band log-mel, 70/15/15"
    report = {"benchmark": "encoder_defaults", "modality": args.modality, "dataset": dataset,
              "epochs": args.epochs, "seeds": args.seeds, "test_accuracy": summary}
    text = json.dumps(report, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
