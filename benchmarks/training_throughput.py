"""Training throughput of ``mmcli finetune`` against a minimal hand-written PyTorch loop training the identical
model (the same ``build_model``, so the same parameters) on the identical cached tensors, side by side in one
process, alternating, as JSON: samples/s of the training phase (validation excluded in both) over every epoch
but the first (it warms the allocator up), and their ratio.

The hand-written loop: the split read whole into tensors, AdamW, a shuffled batch per step, the summed
loss, backward, gradient clipping at 1.0, an optimizer step; nothing else.

Usage: python benchmarks/training_throughput.py [--recipe recipes/quickstart.yaml] [--epochs 3] [--repeats 3] [--warmup 1]
       [--threads N] [--device cpu|cuda] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmcli.data.loader import split_tensors
from mmcli.data.preprocess import preprocess
from mmcli.model import build_model
from mmcli.recipe.loader import load_recipe


def bare_loop(recipe, prepared, epochs: int, device: str) -> float:
    """Samples per second of the hand-written loop (the epochs after the first); on
    ``device``, under autocast when the recipe trains in bf16 or fp16 (fp16 with a gradient scaler)."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe, prepared.preprocessing).train().to(device)
    split = split_tensors(prepared.load()[recipe.data.train_split], list(recipe.inputs), list(recipe.tasks))
    tensors = {key: split[key].to(device) for key in split.keys()}
    precision = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.training.mixed_precision)
    scaler = torch.amp.GradScaler(device, enabled=precision is torch.float16)
    rows = len(tensors["__row__"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.training.learning_rate,
                                  weight_decay=recipe.training.weight_decay)
    size = recipe.training.batch_size
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        order = torch.randperm(rows)
        start, epoch_rows = time.perf_counter(), 0
        for begin in range(0, rows - rows % size, size):
            index = order[begin:begin + size]
            batch = {key: value[index] for key, value in tensors.items()}
            with torch.autocast(device.split(":")[0], dtype=precision or torch.float32, enabled=precision is not None):
                total, _ = model(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            epoch_rows += len(index)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if epoch or epochs == 1:
            seen, seconds = seen + epoch_rows, seconds + time.perf_counter() - start
    return seen / seconds


def mmcli_loop(recipe, epochs: int, output: Path) -> float:
    """Samples per second of ``finetune``'s training phase (its own per-epoch figures), the epochs after the
    first."""
    from mmcli.workflows.finetune import finetune

    stage = recipe.model_copy(update={"output_dir": str(output)}, deep=True)
    stage.training.epochs, stage.training.early_stopping_patience = epochs, None
    stage.evaluation.splits = []
    result = finetune(stage, show_progress=False, overwrite=True)
    history = [json.loads(line) for line in (Path(result["run_dir"]) / "history.jsonl").read_text().splitlines()]
    timed = history[1:] or history
    return sum(r["samples_per_s"] * r["seconds"] for r in timed) / sum(r["seconds"] for r in timed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="1: a first pair of 1 epoch each, not counted")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", nargs="*", default=[])
    parser.add_argument("--device", default="cpu", help="cpu or cuda: both loops train there")
    args = parser.parse_args()
    overrides = list(args.set) + ([f"training.num_threads={args.threads}"] if args.threads else [])
    overrides.append(f"training.device={args.device.split(':')[0]}")
    recipe = load_recipe(args.recipe, overrides)
    if args.threads:
        torch.set_num_threads(args.threads)
    prepared = preprocess(recipe)
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as folder:
        if args.warmup:  # one pair not counted: both loops ran 5-10% faster from the second pair on
            bare_loop(recipe, prepared, 1, args.device)
            mmcli_loop(recipe, 1, Path(folder))
        for repeat in range(args.repeats):  # alternating, so a busy spell hits both
            bare.append(bare_loop(recipe, prepared, args.epochs, args.device))
            ours.append(mmcli_loop(recipe, args.epochs, Path(folder)))
            print(json.dumps({"repeat": repeat, "bare": bare[-1], "mmcli": ours[-1]}), file=sys.stderr, flush=True)
    parameters = sum(p.numel() for p in build_model(recipe, prepared.preprocessing).parameters())
    print(json.dumps({"benchmark": "training_throughput", "recipe": args.recipe, "overrides": overrides,
                      "epochs": args.epochs, "device": args.device, "parameters": parameters, "threads": torch.get_num_threads(),
                      "warmup": bool(args.warmup), "samples_per_s": {"bare_loop": bare, "mmcli": ours},
                      "ratio_per_pair": [round(m / b, 3) for m, b in zip(ours, bare)],
                      "ratio_of_medians": statistics.median(ours) / statistics.median(bare)}, indent=2))


if __name__ == "__main__":
    main()
