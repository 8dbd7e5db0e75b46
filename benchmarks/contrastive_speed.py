"""Contrastive training throughput: mmcli's trainer against a minimal hand-written PyTorch InfoNCE loop
on the identical model (the same towers, built by mmcli from the recipe) and the same cached tensors,
as JSON: samples per second over the timed window (after a warm-up), and per step (from the median step
time, which leaves out what happens between epochs: mmcli's epoch-end checkpoint, which the reference
does not write); best of ``--repeats`` alternating runs.

The reference loop does only what such a loop must: shuffle, slice the batch, encode both inputs,
project, normalise, symmetric cross-entropy, AdamW step with gradient clipping and the learning-rate
schedule. mmcli's timing is taken by a callback from the first to the last step, so it covers its
whole loop (data loader, batch transforms, loss tracking, callbacks) but not set-up or validation.

Usage: python benchmarks/contrastive_speed.py [--recipe recipes/contrastive.yaml] [--steps 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mmcli.data.loader import split_tensors
from mmcli.data.preprocess import preprocess
from mmcli.model import build_model
from mmcli.recipe.loader import load_recipe
from mmcli.training.callbacks.base import Callback
from mmcli.training.seeding import seed_everything
from mmcli.training.trainer import train

WARMUP = 10


class StepClock(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, run) -> None:
        self.times.append(time.perf_counter())


def mmcli_rate(recipe, prepared, steps: int) -> float:
    seed_everything(recipe.seed)
    model = build_model(recipe, prepared.preprocessing)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as run_dir:
        train(recipe, model, prepared.load(), Path(run_dir), show_progress=False, preprocessing=prepared.preprocessing,
              extra_callbacks=[clock])
    return rates(clock.times, recipe.training.batch_size)


def rates(times: list[float], batch_size: int) -> dict[str, float]:
    """Samples per second over the window after the warm-up, and from the median step time."""
    timed = times[WARMUP:]
    steps = sorted(later - earlier for earlier, later in zip(timed, timed[1:]))
    return {"window": (len(timed) - 1) * batch_size / (timed[-1] - timed[0]),
            "per_step": batch_size / steps[len(steps) // 2]}


def reference_rate(recipe, prepared, steps: int) -> float:
    from transformers.optimization import get_cosine_schedule_with_warmup

    seed_everything(recipe.seed)
    model = build_model(recipe, prepared.preprocessing)
    backbone = model.backbone
    first, second = next(iter(recipe.objectives.values())).inputs
    scale = model.objectives[next(iter(recipe.objectives))].log_scale
    tensors = split_tensors(prepared.load()["train"], list(recipe.inputs), [])
    keys = [first, f"{first}_mask", second, f"{second}_mask"]
    rows, batch_size = len(tensors["__row__"]), recipe.training.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.training.learning_rate,
                                  weight_decay=recipe.training.weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(0.05 * steps), steps)
    model.train()
    times, step = [], 0
    while step < steps:
        order = torch.randperm(rows)
        for begin in range(0, rows - batch_size + 1, batch_size):
            index = order[begin:begin + batch_size]
            batch = {key: tensors[key][index] for key in keys}
            a = backbone.shared[first](backbone.encoders[first](batch[first], batch[f"{first}_mask"]).pooled)
            b = backbone.shared[second](backbone.encoders[second](batch[second], batch[f"{second}_mask"]).pooled)
            logits = scale.exp() * F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T
            labels = torch.arange(len(logits))
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.training.grad_clip or 1.0)
            optimizer.step()
            schedule.step()
            times.append(time.perf_counter())
            step += 1
            if step >= steps:
                break
    return rates(times, batch_size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipe", default="recipes/contrastive.yaml")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[])
    args = parser.parse_args()
    # no validation split and no group column: both loops do the same work per step
    recipe = load_recipe(args.recipe, [*args.set, f"training.max_steps={args.steps}", "data.validation_split=null",
                                       "~objectives.clip.group_column"])
    prepared = preprocess(recipe)
    runs = {"mmcli": [], "reference": []}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        runs["reference"].append(reference_rate(recipe, prepared, args.steps))
        runs["mmcli"].append(mmcli_rate(recipe, prepared, args.steps))
    best = {name: {kind: max(run[kind] for run in values) for kind in ("window", "per_step")}
            for name, values in runs.items()}
    print(json.dumps({"benchmark": "contrastive_speed", "recipe": args.recipe, "steps": args.steps,
                      "batch_size": recipe.training.batch_size, "threads": torch.get_num_threads(),
                      "samples_per_second": {name: [{k: round(v, 1) for k, v in run.items()} for run in values]
                                             for name, values in runs.items()},
                      "best": {name: {k: round(v, 1) for k, v in value.items()} for name, value in best.items()},
                      "ratio": {kind: round(best["mmcli"][kind] / best["reference"][kind], 3)
                                for kind in ("window", "per_step")}, "target": 0.95}, indent=2))


if __name__ == "__main__":
    main()
