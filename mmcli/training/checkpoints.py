"""Checkpoints, in one place: safetensors (tensors) plus JSON (everything else); never pickle.

- A weights checkpoint (``checkpoints/best``, what evaluate and predict load) is a folder holding
  ``model.safetensors`` and ``model.json`` (metadata, written last: it marks the folder complete).
- A full training checkpoint for exact resume (``checkpoints/step-N``) holds ``model.safetensors``,
  ``optimizer.safetensors`` (every optimizer tensor), ``rng.safetensors`` (rank 0's RNG states) and
  ``rng-rank-R.safetensors`` (every other rank's, under data parallelism), ``ema.safetensors`` (the moving
  average of the weights, with ``training.ema``) and ``trainer_state.json`` (scheduler, progress, the
  fp16 gradient scaler, the rest, as JSON). It is written into a temporary
  folder and renamed into place, so a kill during a save leaves the previous checkpoints intact and
  a ``step-N`` folder is always complete. Old checkpoints are pruned by renaming them to a hidden name
  first and deleting that, so a kill mid-delete never leaves a half-deleted ``step-N``; what a kill
  leaves behind (hidden staging or pruned folders) is cleaned at the next save.

Under data parallelism every rank's RNG states are saved (gathered to the main process, which alone
writes the folder) and each rank restores its own. A run resumed with another number of processes
restores rank 0's on the ranks the checkpoint has no states for (it continues, but not exactly).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mmcli.errors import DataError
from mmcli.legacy import format1_state, without_unread_fusion
from mmcli.pretrained import PRETRAINED_FROM
from mmcli.model import CHECKPOINT_FORMAT
from mmcli.runs import MODEL_INFO, MODEL_WEIGHTS, atomic_write_bytes, atomic_write_json, read_json, staging_dir
from mmcli.training.rng import RngState, capture_rng, restore_rng
from mmcli.version import __version__

STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"  # rank 0's; rank R's: rng-rank-R.safetensors
EMA_FILE = "ema.safetensors"
PREFIX = "step-"
TRASH = ".pruned-"  # a checkpoint being deleted: renamed first, so a kill never leaves half of one
FORMAT = 2  # trainer_state.json layout (1: mmcli 0.1, before the backbone/objectives split)


def state_tensors(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict (``state``, or the model's own) as safetensors can store it: on the CPU, contiguous,
    and a tensor that appears under two names (an encoder shared by two inputs) stored as a copy under
    the second."""
    out, seen = {}, set()
    for name, tensor in (model.state_dict() if state is None else state).items():
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
    # tied weights (an LM head sharing the embedding) appear under every name, as in the state dict
    frozen = {name for name, parameter in model.named_parameters(remove_duplicate=False)
              if not parameter.requires_grad}
    pretrained = set()
    for prefix, module in model.named_modules():
        if getattr(module, PRETRAINED_FROM, None):
            pretrained |= {f"{prefix}.{name}" if prefix else name
                           for name, _ in module.named_parameters(remove_duplicate=False)} & frozen
    run, loaded = getattr(model, "initialised_from", (None, []))
    init = (set(loaded) & frozen) - pretrained
    return {"pretrained": sorted(pretrained), "init": sorted(init), "init_run": [run] if init else []}


def _saved_state(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    referenced = referenced_weights(model)
    skipped = set(referenced["pretrained"]) | set(referenced["init"])
    return {k: v for k, v in state_tensors(model, state).items() if k not in skipped}, referenced


def save_checkpoint(directory: Path, model: torch.nn.Module, info: dict[str, Any],
                    state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write weights (``state``, or the model's own) then metadata, each atomically; metadata last marks
    the checkpoint complete. Frozen weights with a source are referred to, not copied (``referenced`` in
    the metadata)."""
    state, referenced = _saved_state(model, state)
    atomic_write_bytes(directory / MODEL_WEIGHTS, save_safetensors(state))
    atomic_write_json(directory / MODEL_INFO, {**info, "format": CHECKPOINT_FORMAT, "mmcli": __version__,
                                               "referenced": referenced})
    return directory


Loader = Callable[[dict[str, torch.Tensor]], None]  # loads a (partial) state dict into a model


def load_weights(directory: Path, model: torch.nn.Module, loader: Loader | None = None) -> dict[str, Any]:
    """Load a checkpoint folder's weights into ``model`` and return its metadata: every weight of the model
    is either in the checkpoint or one it refers to (restored from the run it names; pretrained ones the
    model was built with). Format-1 checkpoints (mmcli 0.1) are read with their keys renamed; newer formats
    are refused in one line."""
    state = read_state(directory)
    info = read_json(directory / MODEL_INFO)
    _load_with_references(model, state, info.get("referenced", {}), directory / MODEL_WEIGHTS, loader)
    return info


def _load_with_references(model: torch.nn.Module, state: dict[str, torch.Tensor], referenced: dict[str, list[str]],
                          where: Path, loader: Loader | None = None) -> None:
    own = set(model.state_dict())
    state = without_unread_fusion(state, own)  # an untrained fusion that older runs saved (mmcli.legacy)
    allowed = set(referenced.get("pretrained", [])) | set(referenced.get("init", []))
    problems = sorted(set(state) - own) + sorted((own - set(state)) - allowed)
    if problems:
        raise DataError(f"{where}: weights do not fit this run's model ({len(problems)} keys differ, e.g. "
                        f"{problems[0]})", hint="evaluate with the recipe the run was trained with")
    wanted = sorted(set(referenced.get("init", [])) & own)
    if wanted:
        state = {**state, **weights_of_run(Path(referenced["init_run"][0]), wanted)}
    if loader is not None:  # a sharded model loads whole tensors its own way
        loader(state)
        return
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


def _optimizer_tensors(optimizer: torch.optim.Optimizer, state: dict[str, Any] | None = None
                       ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict() if state is None else state
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                       load: Callable[[dict[str, Any]], None] | None = None) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    (load or optimizer.load_state_dict)({"state": state, "param_groups": meta["param_groups"]})


def rng_file(rank: int) -> str:
    return RNG_FILE if rank == 0 else f"rng-rank-{rank}.safetensors"


@dataclass
class ResumeExtras:
    """What a full checkpoint holds besides weights, optimizer, scheduler and progress. ``rng``: every
    rank's generator states in rank order (default: this process's alone); ``ema``: the moving average
    of the weights (name -> tensor); ``scaler``: the fp16 gradient scaler's ``state_dict`` (numbers);
    ``model_state`` / ``optimizer_state``: whole state dicts gathered from shards (FSDP), in place of the
    model's and the optimizer's own."""

    rng: list[RngState] = field(default_factory=lambda: [capture_rng()])
    ema: dict[str, torch.Tensor] | None = None
    scaler: dict[str, Any] | None = None
    model_state: dict[str, torch.Tensor] | None = None
    optimizer_state: dict[str, Any] | None = None


@dataclass
class ResumeTargets:
    """Where :func:`load_training_state` restores besides model, optimizer and scheduler: this process's
    ``rank`` (its own RNG states), the moving average, the gradient scaler, and how a sharded model and
    optimizer load whole state dicts."""

    rank: int = 0
    ema: Any = None
    scaler: Any = None
    load_model: Loader | None = None
    load_optimizer: Callable[[dict[str, Any]], None] | None = None


def save_training_state(folder: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, progress: dict[str, Any], keep: int, extras: ResumeExtras | None = None) -> Path:
    """Write ``folder/step-N`` atomically, then delete all but the newest ``keep`` checkpoints."""
    extras = extras or ResumeExtras()
    folder.mkdir(parents=True, exist_ok=True)
    staging = staging_dir(folder, f".{PREFIX}{step}.")
    try:
        weights, referenced = _saved_state(model, extras.model_state)
        atomic_write_bytes(staging / MODEL_WEIGHTS, save_safetensors(weights))
        optimizer_tensors, optimizer_meta = _optimizer_tensors(optimizer, extras.optimizer_state)
        atomic_write_bytes(staging / OPTIMIZER_FILE, save_safetensors(optimizer_tensors))
        for rank, (rng_tensors, _) in enumerate(extras.rng):
            atomic_write_bytes(staging / rng_file(rank), save_safetensors(rng_tensors))
        if extras.ema is not None:
            atomic_write_bytes(staging / EMA_FILE, save_safetensors({k: v.detach().cpu().contiguous()
                                                                     for k, v in extras.ema.items()}))
        atomic_write_json(staging / STATE_FILE, {"format": FORMAT, "step": step, "progress": progress,
                                                 "optimizer": optimizer_meta, "scheduler": scheduler.state_dict(),
                                                 "rng": [meta for _, meta in extras.rng], "scaler": extras.scaler,
                                                 "referenced": referenced})
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


def recorded_threads(folder: Path) -> int | None:
    """The CPU threads the newest full checkpoint in ``folder`` was trained with (None: none recorded)."""
    found = list_checkpoints(folder)
    if not found:
        return None
    try:
        return json.loads((found[-1] / STATE_FILE).read_text())["progress"].get("threads")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def load_training_state(checkpoint: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        targets: ResumeTargets | None = None) -> dict[str, Any]:
    """Restore everything saved by save_training_state (see :class:`ResumeTargets`); returns the trainer's
    progress record."""
    targets = targets or ResumeTargets()
    try:
        meta = json.loads((checkpoint / STATE_FILE).read_text())
        if meta.get("format", 1) != FORMAT:
            raise DataError(f"{checkpoint}: written by mmcli 0.1 (checkpoint format {meta.get('format', 1)}); this "
                            f"mmcli resumes format {FORMAT} only", hint="start a new run (its best model still "
                            "evaluates and predicts)")
        _load_with_references(model, load_safetensors((checkpoint / MODEL_WEIGHTS).read_bytes()),
                              meta.get("referenced", {}), checkpoint / MODEL_WEIGHTS, targets.load_model)
        _restore_optimizer(optimizer, load_safetensors((checkpoint / OPTIMIZER_FILE).read_bytes()), meta["optimizer"],
                           targets.load_optimizer)
        scheduler.load_state_dict(meta["scheduler"])
        ranks = meta["rng"] if isinstance(meta["rng"], list) else [meta["rng"]]  # a dict: one rank (before 0.3)
        own = targets.rank if targets.rank < len(ranks) else 0  # another number of processes: rank 0's (not exact)
        restore_rng(load_safetensors((checkpoint / rng_file(own)).read_bytes()), ranks[own])
        if targets.ema is not None:
            targets.ema.load_state_dict(load_safetensors((checkpoint / EMA_FILE).read_bytes()))
        if targets.scaler is not None and meta.get("scaler"):
            targets.scaler.load_state_dict(meta["scaler"])
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise DataError(f"{checkpoint}: cannot resume from this checkpoint: {' '.join(str(error).split())[:200]}",
                        hint="delete it to resume from an older one") from error
    return meta["progress"]
