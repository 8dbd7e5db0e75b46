"""The quickstart by hand, the way a person writes it without mmcli: decode the media in a plain loop (PIL,
soundfile, torchaudio, PyAV), fit a word vocabulary and the input statistics on the train rows, train the same
model (mmcli's build_model on these tensors: the same layers) with a plain PyTorch loop that validates every
epoch and keeps the best epoch's weights, and report the test accuracy and the time of each phase as JSON. The baseline of benchmarks/end_to_end.py.

Usage: python benchmarks/bare_quickstart.py MANIFEST [--epochs 20] [--threads N]
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def decode(rows: list[dict], base: Path) -> dict[str, np.ndarray]:
    import av
    import soundfile
    import torchaudio
    from PIL import Image

    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=512, hop_length=256, n_mels=32)
    images, sounds, frames = [], [], []
    for row in rows:
        with Image.open(base / row["image"]) as image:
            images.append(np.asarray(image.convert("RGB").resize((32, 32), Image.BILINEAR)).transpose(2, 0, 1))
        wave, rate = soundfile.read(base / row["audio"], dtype="float32")
        wave = torchaudio.functional.resample(torch.from_numpy(wave), rate, 16000)[:16000]
        wave = torch.nn.functional.pad(wave, (0, 16000 - len(wave)))
        sounds.append(torch.log(mel(wave) + 1e-6).numpy().astype(np.float16))
        with av.open(str(base / row["video"])) as container:
            clip = [np.asarray(f.to_image().resize((16, 16), Image.BILINEAR)).transpose(2, 0, 1)
                    for f in container.decode(video=0)][:8]
        frames.append(np.stack(clip + [np.zeros_like(clip[0])] * (8 - len(clip))))
    return {"image": np.stack(images), "audio": np.stack(sounds), "video": np.stack(frames)}


def tokens(texts: list[str], vocabulary: dict[str, int]) -> np.ndarray:
    ids = np.zeros((len(texts), 16), dtype=np.int64)
    for row, text in enumerate(texts):
        words = [2] + [vocabulary.get(w, 1) for w in text.lower().split()][:14] + [3]
        ids[row, :len(words)] = words
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = {"start": time.perf_counter()}
    manifest = Path(args.manifest)
    with manifest.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    split = {name: [r for r in rows if r["split"] == name] for name in ("train", "validation", "test")}
    media = {name: decode(part, manifest.parent) for name, part in split.items()}
    counts = collections.Counter(w for r in split["train"] for w in r["text"].lower().split())
    vocabulary = {w: i + 5 for i, (w, _) in enumerate(sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:495])}
    scenes = sorted({r["scene"] for r in split["train"]})
    directions = sorted({r["direction"] for r in split["train"]})
    sizes = np.array([float(r["size"]) for r in split["train"]])
    tensors = {}
    for name, part in split.items():
        text = tokens([r["text"] for r in part], vocabulary)
        tensors[name] = {
            "text": torch.from_numpy(text), "text_mask": torch.from_numpy(text > 0),
            "image": torch.from_numpy(media[name]["image"]), "image_mask": torch.ones(len(part), 1, dtype=torch.bool),
            "audio": torch.from_numpy(media[name]["audio"]), "audio_mask": torch.ones(len(part), 63, dtype=torch.bool),
            "video": torch.from_numpy(media[name]["video"]), "video_mask": torch.ones(len(part), 8, dtype=torch.bool),
            "scene": torch.tensor([scenes.index(r["scene"]) for r in part]),
            "motion": torch.tensor([directions.index(r["direction"]) for r in part]),
            "size": torch.tensor([(float(r["size"]) - sizes.mean()) / sizes.std() for r in part], dtype=torch.float32)}
    train = media["train"]
    spec = {"text": {"vocab_size": 500, "max_length": 16, "pad_id": 0},
            "image": {"channels": 3, "size": 32, "mean": (train["image"] / 255).mean(axis=(0, 2, 3)).tolist(),
                      "std": (train["image"] / 255).std(axis=(0, 2, 3)).tolist()},
            "audio": {"n_features": 32, "frames": 63, "mean": float(train["audio"].astype(np.float32).mean()),
                      "std": float(train["audio"].astype(np.float32).std())},
            "video": {"channels": 3, "size": 16, "num_frames": 8, "mean": (train["video"] / 255).mean(axis=(0, 1, 3, 4)).tolist(),
                      "std": (train["video"] / 255).std(axis=(0, 1, 3, 4)).tolist()}}
    clock["decoded"] = time.perf_counter()

    from mmcli.model import build_model
    from mmcli.recipe.loader import load_recipe

    recipe = load_recipe(str(RECIPE))
    preprocessing = {"inputs": {name: {"modality": name, "spec": spec[name]} for name in spec},
                     "tasks": {"scene": {"type": "classification", "spec": {"classes": scenes}},
                               "motion": {"type": "classification", "spec": {"classes": directions}},
                               "size": {"type": "regression", "spec": {"mean": float(sizes.mean()), "std": float(sizes.std())}}}}
    torch.manual_seed(0)
    model = build_model(recipe, preprocessing).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.01)
    data, size = tensors["train"], 32
    count = len(data["scene"])
    best_loss, best_state = float("inf"), None
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(count)
        for begin in range(0, count - count % size, size):
            batch = {key: value[order[begin:begin + size]] for key, value in data.items()}
            total, _ = model(batch)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        model.eval()  # validation every epoch, the best epoch's weights kept (what the quickstart does)
        with torch.no_grad():
            validation = tensors["validation"]
            rows = len(validation["scene"])
            loss = sum(float(model({k: v[b:b + 256] for k, v in validation.items()})[0]) * min(256, rows - b)
                       for b in range(0, rows, 256)) / rows
        if loss < best_loss:
            best_loss, best_state = loss, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    clock["trained"] = time.perf_counter()
    model.eval()
    with torch.no_grad():
        rep = model.backbone(tensors["test"])
        scene = model.tasks["scene"].predict(rep).argmax(dim=1)
    accuracy = float((scene == tensors["test"]["scene"]).float().mean())
    clock["evaluated"] = time.perf_counter()
    print(json.dumps({"decode_s": round(clock["decoded"] - clock["start"], 2),
                      "train_s": round(clock["trained"] - clock["decoded"], 2),
                      "evaluate_s": round(clock["evaluated"] - clock["trained"], 2),
                      "scene_accuracy": accuracy, "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
