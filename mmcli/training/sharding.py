"""``training.strategy: fsdp``: parameters, gradients and optimizer state sharded over the processes with
torch's FSDP2 (``torch.distributed.fsdp.fully_shard``), for models that do not fit one device.

Each Hugging Face transformer layer (the classes a model lists in ``_no_split_modules``) is its own
shard group, gathered only while it runs; the rest of the model is one group at the root. Embeddings
tied to an output layer stay in the root group together. Checkpoints hold the whole tensors (gathered
on the main process; on resume each process takes its part of them), in the same files as under DDP.
Validation and other calls into parts of the model gather every group first (the whole model on each
process for the time of the call)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn


def layer_classes(model: nn.Module) -> set[type]:
    """The transformer layer classes of every Hugging Face model inside ``model``."""
    names = set()
    for module in model.modules():
        names |= set(getattr(module, "_no_split_modules", None) or [])
    return {type(module) for module in model.modules() if type(module).__name__ in names}


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``model`` in place over the default process group (on ``device``) and return it; its
    state-dict names are unchanged."""
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    layers = layer_classes(model)
    for module in list(model.modules()):
        if module is not model and type(module) in layers:
            fully_shard(module)
    fully_shard(model)
    # an input missing from every row of one process's batch leaves its encoder without gradients there:
    # zeros are reduced for it, so every process reduces the same tensors (DDP's find_unused_parameters)
    model.set_reduce_scatter_unused_params(True)
    return model


def _units(model: nn.Module) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule

    return [module for module in model.modules() if isinstance(module, FSDPModule)]


@contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """Every shard group gathered for the block (a collective: every process enters it), then sharded
    again. Inside, the layers keep their gathered weights after each forward pass, so that one process
    alone may run the model (validation on the main process) without any further collective."""
    units = _units(model)
    layers = [unit for unit in units if unit is not model]
    for unit in units:
        unit.unshard()
    for unit in layers:
        unit.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for unit in layers:
            unit.set_reshard_after_forward(True)
        for unit in units:
            unit.reshard()


def _whole(value: Any) -> Any:
    """A sharded tensor made whole (a collective: every process calls it in the same order)."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def _sharded_like(target: Any, whole: torch.Tensor) -> torch.Tensor:
    """``whole`` as ``target`` is laid out: this process's part of it when ``target`` is sharded. Every
    process holds the whole tensor (read from the checkpoint), so each takes its part: no collective."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(target, DTensor):
        return whole
    return distribute_tensor(whole.to(target.device), target.device_mesh, target.placements, src_data_rank=None)


def _main() -> bool:
    import torch.distributed as dist

    return dist.get_rank() == 0


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole state dict on the CPU of the main process (None on the others); a collective."""
    state = {name: _whole(value).detach().cpu() for name, value in model.state_dict().items()}
    return state if _main() else None


def load_full_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a whole (possibly partial) state dict: every process passes all of it and keeps its parts."""
    current = model.state_dict()
    with torch.no_grad():
        model.load_state_dict({name: _sharded_like(current[name], value) for name, value in state.items()
                               if name in current}, strict=False)


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """The optimizer's ``state_dict`` with whole tensors, on the main process (None on the others): the
    files of a DDP checkpoint. A collective."""
    state = optimizer.state_dict()
    # by parameter index, the same order on every process (the state's own order is that of its loading)
    whole = {index: {key: _whole(value).detach().cpu() if torch.is_tensor(value) else value
                     for key, value in sorted(state["state"][index].items())} for index in sorted(state["state"])}
    return {"state": whole, "param_groups": state["param_groups"]} if _main() else None


def load_full_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load what :func:`full_optimizer_state` saved (every process passes all of it); a state tensor
    shaped like its parameter is laid out like it (Adam's moments), others stay whole (the step)."""
    params = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    sharded = {int(index): {key: _sharded_like(params[int(index)], value)
                            if torch.is_tensor(value) and value.shape == params[int(index)].shape else value
                            for key, value in state["state"][index].items()} for index in sorted(state["state"], key=int)}
    optimizer.load_state_dict({"state": sharded, "param_groups": state["param_groups"]})


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Sharded tensors (DTensors) made whole on every process (a collective); others as they are."""
    from torch.distributed.tensor import DTensor

    return {name: t.full_tensor() if isinstance(t, DTensor) else t for name, t in tensors.items()}


def copy_into_shards(targets: list[torch.Tensor], wholes: list[torch.Tensor]) -> None:
    """Copy whole tensors into (possibly sharded) tensors: each process keeps its part (no collective)."""
    with torch.no_grad():
        for target, whole in zip(targets, wholes):
            target.copy_(_sharded_like(target, whole))
