"""Starting from another run's weights (``init: RUN_DIR``): its best checkpoint's backbone is loaded
into a new model, after checking that every input both share was preprocessed the same way (the
same vocabulary, image size, audio features...), since weights trained on other tensors would be
silently wrong; so is the decoder of a text task both runs have (a language model and its projectors,
aligned on captions before instruction tuning), also into a decoder that has adapters since (LoRA's
``base_layer``). Other objectives are not loaded: a fine-tuning stage brings its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mmcli.errors import RecipeError
from mmcli.runs import BEST_CHECKPOINT, PREPROCESSING_FILE, read_json
from mmcli.training.checkpoints import read_state

BACKBONE = "backbone."
ENCODERS = "backbone.encoders."


def _difference(old: Any, new: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """(key path, old, new) where two specs first differ (None when equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    return None if old == new else (path, old, new)


def _describe(name: str, path: str, old: Any, new: Any) -> str:
    if path.startswith("tokenizer_json"):
        return "its vocabulary differs (the tokenizers were trained on other text)"
    shown = f"inputs.{name}.preprocessing.{path.removeprefix('config.')}" if path.startswith("config.") else f"'{path}'"
    values = f" ({old!r} there, {new!r} here)" if all(isinstance(v, (int, float, str, bool)) for v in (old, new)) else ""
    return f"{shown} differs{values}"


def initialise_from(model: Any, run_dir: str | Path, preprocessing: dict) -> dict[str, Any]:
    """Load ``run_dir``'s best backbone weights into ``model``; return what was loaded:
    ``{"from", "loaded", "missing", "unexpected", "shape_differs"}`` (keys of this backbone left as
    initialised, keys of its backbone this one has not, and keys of both with other shapes, e.g. a
    fusion over other inputs; an encoder of another shape is refused)."""
    run_dir = Path(run_dir)
    fitted_file = run_dir / PREPROCESSING_FILE
    if not fitted_file.is_file():
        raise RecipeError(f"init: {run_dir} is not a run directory (no {PREPROCESSING_FILE})",
                          hint="point init at the folder 'mmcli pretrain' or 'mmcli finetune' wrote")
    fitted = read_json(fitted_file)
    for name, entry in preprocessing["inputs"].items():
        if name in fitted["inputs"]:
            found = _difference(fitted["inputs"][name]["spec"], entry["spec"])
            if found is not None:
                raise RecipeError(f"init: input '{name}' was preprocessed differently in {run_dir}: {_describe(name, *found)}",
                                  hint="use the same preprocessing settings and training rows as the run you start from")
    tasks = set(getattr(model, "tasks", {}))
    source = {_canonical(key): value for key, value in read_state(run_dir / BEST_CHECKPOINT).items()
              if _transferable(key, tasks)}
    own_keys = {_canonical(key): key for key in model.state_dict() if _transferable(key, tasks)}
    state = {own_keys.get(key, key): value for key, value in source.items()}
    own = {key: value for key, value in model.state_dict().items() if _transferable(key, tasks)}
    differing = [key for key, value in state.items() if key in own and own[key].shape != value.shape]
    for key in differing:
        if key.startswith(ENCODERS):  # an encoder of another shape was built from other settings: refuse
            raise RecipeError(f"init: {key} has shape {tuple(state[key].shape)} in {run_dir} and "
                              f"{tuple(own[key].shape)} here",
                              hint="the encoder settings and model.hidden_size must match the run you start from")
    loadable = {key: value for key, value in state.items() if key in own and key not in differing}
    with torch.no_grad():
        model.load_state_dict(loadable, strict=False)
    # a fusion over other inputs (the pretraining stage had a caption input) has other shapes: left as initialised
    missing = [key for key in sorted(set(own) - set(loadable)) if ADAPTER not in key]  # adapters start fresh
    model.initialised_from = (str(run_dir), sorted(loadable))  # checkpoints may refer to these instead of copying them
    return {"from": str(run_dir), "loaded": len(loadable), "missing": missing,
            "unexpected": sorted(set(state) - set(own)), "shape_differs": sorted(differing)}


ADAPTER = ".lora_"  # peft's adapter weights: new in a stage that adds them


def _transferable(key: str, tasks: set[str]) -> bool:
    """The backbone, and the decoder of a task this model has."""
    if key.startswith(BACKBONE):
        return True
    parts = key.split(".")
    return len(parts) > 2 and parts[0] == "objectives" and parts[1] in tasks and parts[2] == "decoder"


def _canonical(key: str) -> str:
    """A weight's name without what adapters insert (a LoRA-wrapped layer keeps its weight in base_layer)."""
    return key.replace(".base_layer.", ".")
