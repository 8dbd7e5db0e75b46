"""Small validated recipes, fitted-looking specs and loader-format batches for model-level tests
(no data on disk: the specs stand in for what preprocess would fit)."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.model import build_model
from mmcli.recipe.loader import validate_recipe

B, D = 4, 16
SPECS = {
    "text": {"vocab_size": 20, "max_length": 6, "pad_id": 0},
    "image": {"channels": 3, "size": 8, "mean": [0.5] * 3, "std": [0.25] * 3},
    "audio": {"n_features": 4, "frames": 8, "mean": 0.0, "std": 1.0},
    "video": {"channels": 1, "size": 8, "num_frames": 2, "mean": [0.5], "std": [0.25]},
}
SMALL = {"text": {"type": "transformer", "layers": 1}, "image": {"type": "cnn", "channels": [4, 8]},
         "audio": {"type": "cnn", "channels": [8]}, "video": {"type": "frames", "channels": [4]}}  # the machine is shared
INPUTS = {"text": "review", "image": "photo", "audio": "clip", "video": "movie"}
TASKS = {"label": {"type": "classification", "column": "label"},
         "score": {"type": "regression", "column": "score", "weight": 0.5}}
TASK_SPECS = {"label": {"type": "classification", "spec": {"classes": ["a", "b", "c"]}},
              "score": {"type": "regression", "spec": {"mean": 3.0, "std": 2.0}}}


def recipe(fusion: str | dict = "concat", modalities: list[str] | None = None, tasks: dict | None = None,
           hidden_size: int = D, **sections: Any) -> Any:
    """A validated recipe over ``modalities`` (input names from ``INPUTS``); ``sections``: more keys
    (``model={...}`` is merged into the model section, others replace theirs)."""
    modalities = modalities or list(INPUTS)
    data = {"name": "t", "data": {"manifest": "unused.csv"},
            "inputs": {INPUTS[m]: {"modality": m, "column": INPUTS[m], "encoder": SMALL[m]} for m in modalities},
            "tasks": TASKS if tasks is None else tasks,
            "model": {"hidden_size": hidden_size, "dropout": 0.1,
                      "fusion": {"type": fusion} if isinstance(fusion, str) else fusion, **sections.pop("model", {})},
            **sections}
    return validate_recipe(data)


def preprocessing(built: Any) -> dict:
    return {"inputs": {name: {"modality": cfg.modality, "spec": SPECS[cfg.modality]} for name, cfg in built.inputs.items()},
            "tasks": {name: TASK_SPECS[name] for name in built.tasks}}


def model(*args: Any, seed: int = 0, **kwargs: Any) -> Any:
    built = recipe(*args, **kwargs)
    torch.manual_seed(seed)
    return build_model(built, preprocessing(built))


def make_batch(modalities: list[str] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A loader-format batch: row r lacks the modality at position r (if any), so every encoder sees a missing row."""
    modalities = modalities or list(INPUTS)
    g = torch.Generator().manual_seed(seed)
    shapes = {"text": (6,), "image": (3, 8, 8), "audio": (4, 8), "video": (2, 1, 8, 8)}
    batch: dict[str, torch.Tensor] = {"row_id": torch.arange(B)}  # extra keys must be ignored
    for i, m in enumerate(modalities):
        name, shape = INPUTS[m], shapes[m]
        if m == "text":
            x = torch.randint(1, 20, (B, *shape), generator=g)
        elif m == "audio":
            x = torch.randn(B, *shape, generator=g).half()
        else:
            x = torch.randint(0, 256, (B, *shape), generator=g, dtype=torch.uint8)
        mask = torch.ones(B, {"image": 1, "video": 2}.get(m, shape[-1]), dtype=torch.bool)
        if m in ("text", "audio"):
            mask[:2, -2:] = False  # some padding
        mask[i % B] = False
        x[~mask.any(dim=1)] = 0
        batch[name], batch[f"{name}_mask"] = x, mask
    batch["label"] = torch.tensor([0, 1, 2, -100])
    batch["score"] = torch.tensor([0.5, float("nan"), -1.0, 1.5])
    return batch


def rows(modalities: list[str], n_batches: int = 8, first_seed: int = 0) -> dict[str, torch.Tensor]:
    """Loader-format tensors of a split: 4 * n_batches rows, some inputs missing, some labels missing."""
    batches = [make_batch(modalities, seed=s) for s in range(first_seed, first_seed + n_batches)]
    tensors = {k: torch.cat([b[k] for b in batches]) for k in batches[0] if k != "row_id"}
    return {**tensors, "__row__": torch.arange(B * n_batches)}


def predictions(built_model: Any, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The supervised objectives' predictions in the model's current mode, without inference wrappers."""
    rep = built_model.backbone(batch)
    return {name: task.predict(rep) for name, task in built_model.tasks.items()}
