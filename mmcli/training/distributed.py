"""Processes: one, or several under ``torchrun`` / ``accelerate launch`` (data parallelism through
accelerate's DDP wrapper; gloo on CPU, NCCL on GPUs). ``training.batch_size`` is the global batch:
each of N processes takes batch_size / N rows of every step's batch."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.errors import DataError


def _wants_cpu(recipe: Any) -> bool:
    if recipe.training.device == "cuda" and not torch.cuda.is_available():
        raise DataError("training.device: cuda was asked for but no GPU is visible", hint="use training.device=auto")
    return recipe.training.device == "cpu" or not torch.cuda.is_available()


def process_state(recipe: Any) -> Any:
    """accelerate's process state (joins the process group under a launcher); ``is_main_process``,
    ``main_process_first()``, ``wait_for_everyone()``."""
    from accelerate import PartialState

    return PartialState(cpu=_wants_cpu(recipe))


def make_accelerator(recipe: Any, run_dir: Any = None) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    # some parameters get no gradient in some steps (a loss with nothing to learn from in a batch):
    # DDP must not wait for them
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    # split_batches: each step's batch is the global one, shared by the processes, so the learning-rate
    # schedule takes one step per optimizer step (else accelerate steps it once per process)
    trackers = []
    if run_dir is not None and recipe.training.trackers:
        from mmcli.training.callbacks.trackers import build_trackers

        trackers = build_trackers(recipe.training.trackers, run_dir, recipe.name)
    return Accelerator(cpu=_wants_cpu(recipe), mixed_precision=recipe.training.mixed_precision, kwargs_handlers=[ddp],
                       dataloader_config=DataLoaderConfiguration(split_batches=True), log_with=trackers or None)


def broadcast(value: Any, accelerator: Any) -> Any:
    """The main process's ``value`` on every process (a picklable Python object)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


def all_finite(loss: torch.Tensor, accelerator: Any) -> bool:
    """Whether the loss is finite on every process (one host sync; processes skip a step together)."""
    bad = (~torch.isfinite(loss.detach())).float()
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return float(bad) == 0.0


def broadcast_value(value: Any, state: Any) -> Any:
    """The main process's ``value`` on every process, before an accelerator exists (``state``: the
    process state of :func:`process_state`)."""
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]
