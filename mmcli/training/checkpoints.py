"""Checkpoints, in one place: safetensors (tensors) plus JSON (everything else); never pickle.

- A weights checkpoint (``checkpoints/best``, what evaluate and predict load) is a folder holding
  ``model.safetensors`` and ``model.json`` (metadata, written last: it marks the folder complete).
- A full training checkpoint for exact resume (``checkpoints/step-N``) holds ``model.safetensors``,
  ``optimizer.safetensors`` (every optimizer tensor), ``rng.safetensors`` (torch RNG states) and
  ``trainer_state.json`` (scheduler, progress, the rest, as JSON). It is written into a temporary
  folder and renamed into place, so a kill during a save leaves the previous checkpoints intact and
  a ``step-N`` folder is always complete. Old checkpoints are pruned by renaming them to a hidden name
  first and deleting that, so a kill mid-delete never leaves a half-deleted ``step-N``; what a kill
  leaves behind (hidden staging or pruned folders) is cleaned at the next save.

Under data parallelism the RNG states saved are rank 0's; a resumed multi-process run restores them
on every rank (its dropout draws then differ from the uninterrupted run's on the other ranks).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mmcli.errors import DataError
from mmcli.legacy import format1_state
from mmcli.pretrained import PRETRAINED_FROM
from mmcli.model import CHECKPOINT_FORMAT
from mmcli.runs import MODEL_INFO, MODEL_WEIGHTS, atomic_write_bytes, atomic_write_json, read_json, staging_dir
from mmcli.version import __version__

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
PREFIX = "step-"
TRASH = ".pruned-"  # a checkpoint being deleted: renamed first, so a kill never leaves half of one
FORMAT = 2  # trainer_state.json layout (1: mmcli 0.1, before the backbone/objectives split)


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as safetensors can store it: on the CPU, contiguous, and a tensor that appears
    under two names (an encoder shared by two inputs) stored as a copy under the second."""
    out, seen = {}, set()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.data_ptr() in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        out[name] = tensor
    return out


def referenced_weights(model: torch.nn.Module) -> dict[str, list[str]]:
    """The weights a checkpoint refers to instead of copying: frozen, and restored from where they came
    (``pretrained``: a model folder the model is built from; ``init``: the run it was initialised from,
    ``model.initialised_from``). A frozen pretrained language model or tower costs no disk per checkpoint."""
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    pretrained = set()
    for prefix, module in model.named_modules():
        if getattr(module, PRETRAINED_FROM, None):
            pretrained |= {f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters()} & frozen
    run, loaded = getattr(model, "initialised_from", (None, []))
    init = (set(loaded) & frozen) - pretrained
    return {"pretrained": sorted(pretrained), "init": sorted(init), "init_run": [run] if init else []}


def _saved_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    referenced = referenced_weights(model)
    skipped = set(referenced["pretrained"]) | set(referenced["init"])
    return {k: v for k, v in state_tensors(model).items() if k not in skipped}, referenced


def save_checkpoint(directory: Path, model: torch.nn.Module, info: dict[str, Any]) -> Path:
    """Write weights then metadata, each atomically; metadata last marks the checkpoint complete. Frozen
    weights with a source are referred to, not copied (``referenced`` in the metadata)."""
    state, referenced = _saved_state(model)
    atomic_write_bytes(directory / MODEL_WEIGHTS, save_safetensors(state))
    atomic_write_json(directory / MODEL_INFO, {**info, "format": CHECKPOINT_FORMAT, "mmcli": __version__,
                                               "referenced": referenced})
    return directory


def load_weights(directory: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load a checkpoint folder's weights into ``model`` and return its metadata: every weight of the model
    is either in the checkpoint or one it refers to (restored from the run it names; pretrained ones the
    model was built with). Format-1 checkpoints (mmcli 0.1) are read with their keys renamed; newer formats
    are refused in one line."""
    state = read_state(directory)
    info = read_json(directory / MODEL_INFO)
    _load_with_references(model, state, info.get("referenced", {}), directory / MODEL_WEIGHTS)
    return info


def _load_with_references(model: torch.nn.Module, state: dict[str, torch.Tensor], referenced: dict[str, list[str]],
                          where: Path) -> None:
    own = set(model.state_dict())
    allowed = set(referenced.get("pretrained", [])) | set(referenced.get("init", []))
    problems = sorted(set(state) - own) + sorted((own - set(state)) - allowed)
    if problems:
        raise DataError(f"{where}: weights do not fit this run's model ({len(problems)} keys differ, e.g. "
                        f"{problems[0]})", hint="evaluate with the recipe the run was trained with")
    wanted = sorted(set(referenced.get("init", [])) & own)
    if wanted:
        state = {**state, **weights_of_run(Path(referenced["init_run"][0]), wanted)}
    with torch.no_grad():
        model.load_state_dict(state, strict=False)


def weights_of_run(run_dir: Path, keys: list[str], depth: int = 0) -> dict[str, torch.Tensor]:
    """``keys`` from a run's best checkpoint (under their names in the model that asks: a weight a LoRA
    adapter wraps is ``base_layer`` there), following the run's own references."""
    from mmcli.runs import BEST_CHECKPOINT

    best = run_dir / BEST_CHECKPOINT
    if not (best / MODEL_INFO).is_file():
        raise DataError(f"{run_dir}: the run whose frozen weights this one refers to is gone (no checkpoint)",
                        hint="keep the run named in init, or train this one again")
    state = {key.replace(".base_layer.", "."): value for key, value in read_state(best).items()}
    found = {key: state[key.replace(".base_layer.", ".")] for key in keys if key.replace(".base_layer.", ".") in state}
    rest = [key for key in keys if key not in found]
    referenced = read_json(best / MODEL_INFO).get("referenced", {})
    if rest and referenced.get("init_run") and depth < 8:
        found.update(weights_of_run(Path(referenced["init_run"][0]), rest, depth + 1))
    still = [key for key in keys if key not in found]
    if still:
        raise DataError(f"{run_dir}: its checkpoint lacks {len(still)} weights this run refers to (e.g. {still[0]})")
    return found


def read_state(directory: Path) -> dict[str, torch.Tensor]:
    """A checkpoint folder's state dict, in the current format."""
    weights, info_file = directory / MODEL_WEIGHTS, directory / MODEL_INFO
    if not weights.is_file() or not info_file.is_file():
        raise DataError(f"{directory}: no complete checkpoint (needs {MODEL_WEIGHTS} and {MODEL_INFO})",
                        hint="train first with 'mmcli finetune RECIPE'")
    info = read_json(info_file)
    written = int(info.get("format", 1))
    if written > CHECKPOINT_FORMAT:
        raise DataError(f"{directory}: written by mmcli {info.get('mmcli', '?')} (checkpoint format {written}); this "
                        f"mmcli {__version__} reads formats 1 to {CHECKPOINT_FORMAT}", hint="upgrade mmcli")
    try:
        state = load_safetensors(weights.read_bytes())
    except SafetensorError as error:
        # Never fall back to torch.load: a pickle can run code when loaded.
        raise DataError(f"{weights}: not a safetensors file ({error}); mmcli never loads pickled checkpoints",
                        hint="retrain, or convert the weights to safetensors") from error
    return format1_state(state) if written == 1 else state


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_tensors() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = value
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, position, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_training_state(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, progress: dict[str, Any], keep: int) -> Path:
    """Write ``folder/step-N`` atomically, then delete all but the newest ``keep`` checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(folder, f".{PREFIX}{step}.")
    try:
        weights, referenced = _saved_state(model)
        atomic_write_bytes(staging / MODEL_WEIGHTS, save_safetensors(weights))
        optimizer_tensors, optimizer_meta = _optimizer_tensors(optimizer)
        atomic_write_bytes(staging / OPTIMIZER_FILE, save_safetensors(optimizer_tensors))
        rng_tensors, rng_meta = _rng_tensors()
        atomic_write_bytes(staging / RNG_FILE, save_safetensors(rng_tensors))
        atomic_write_json(staging / STATE_FILE, {"format": FORMAT, "step": step, "progress": progress,
                                                 "optimizer": optimizer_meta, "scheduler": scheduler.state_dict(),
                                                 "rng": rng_meta, "referenced": referenced})
        target = folder / f"{PREFIX}{step}"
        if target.exists():
            _discard(target)
        os.replace(staging, target)
        _fsync_dir(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        _discard(old)
    clean_stale(folder)
    return target


def _discard(path: Path) -> None:
    """Delete a checkpoint folder: rename it out of the ``step-N`` namespace, then delete."""
    trash = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TRASH}{path.name}."))
    os.replace(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def clean_stale(folder: Path) -> None:
    """Remove what killed saves and prunes leave: hidden staging and pruned folders, and ``step-N``
    folders without their state file (only a delete interrupted before this version could leave one)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if not path.is_dir():
            continue
        partial = path.name.startswith(PREFIX) and not (path / STATE_FILE).is_file()
        if path.name.startswith((f".{PREFIX}", TRASH)) or partial:
            shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (a folder is complete once it has its final name)."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX):].isdigit()
             and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def load_training_state(checkpoint: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore everything saved by save_training_state; returns the trainer's progress record."""
    try:
        meta = json.loads((checkpoint / STATE_FILE).read_text())
        if meta.get("format", 1) != FORMAT:
            raise DataError(f"{checkpoint}: written by mmcli 0.1 (checkpoint format {meta.get('format', 1)}); this "
                            f"mmcli resumes format {FORMAT} only", hint="start a new run (its best model still "
                            "evaluates and predicts)")
        _load_with_references(model, load_safetensors((checkpoint / MODEL_WEIGHTS).read_bytes()),
                              meta.get("referenced", {}), checkpoint / MODEL_WEIGHTS)
        _restore_optimizer(optimizer, load_safetensors((checkpoint / OPTIMIZER_FILE).read_bytes()), meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        _restore_rng(load_safetensors((checkpoint / RNG_FILE).read_bytes()), meta["rng"])
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise DataError(f"{checkpoint}: cannot resume from this checkpoint: {' '.join(str(error).split())[:200]}",
                        hint="delete it to resume from an older one") from error
    return meta["progress"]
