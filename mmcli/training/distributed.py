"""Processes: one, or several under ``torchrun`` / ``accelerate launch`` (data parallelism through
accelerate's DDP wrapper; gloo on CPU, NCCL on GPUs). ``training.batch_size`` is the global batch:
each of N processes takes batch_size / N rows of every step's batch."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.errors import DataError, RecipeError


def _wants_cpu(recipe: Any) -> bool:
    if recipe.training.device == "cuda" and not torch.cuda.is_available():
        raise DataError("training.device: cuda was asked for but no GPU is visible", hint="use training.device=auto")
    return recipe.training.device == "cpu" or not torch.cuda.is_available()


def process_state(recipe: Any) -> Any:
    """accelerate's process state (joins the process group under a launcher); ``is_main_process``,
    ``main_process_first()``, ``wait_for_everyone()``."""
    from accelerate import PartialState

    return PartialState(cpu=_wants_cpu(recipe))


def check_precision(recipe: Any) -> None:
    """fp16 is for GPUs: CPUs have no fast float16 arithmetic (autocast to it is slow or unsupported)."""
    if recipe.training.mixed_precision == "fp16" and _wants_cpu(recipe):
        raise RecipeError("training.mixed_precision: fp16 needs a GPU (on the CPU float16 is slow or unsupported)",
                          hint="use training.mixed_precision=bf16 or no on the CPU")


def make_accelerator(recipe: Any, run_dir: Any = None) -> Any:
    """accelerate's ``Accelerator`` for the recipe: device, mixed precision (fp16 with its gradient scaler,
    ``accelerator.scaler``), data-parallel settings, trackers."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs

    check_precision(recipe)

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


def stop_group(accelerator: Any) -> Any:
    """A process group on the CPU (gloo) for agreeing on a stop after each step without a device sync: the
    default group when it is gloo, else a new one (a collective: every process creates it). None with
    one process."""
    if accelerator.num_processes == 1:
        return None
    import torch.distributed as dist

    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def agreed_signal(signum: int | None, accelerator: Any, group: Any) -> int | None:
    """The signal any process was asked to stop by (the same answer on every process), so that all stop
    after the same step and save one checkpoint together. One small CPU all-reduce per step."""
    if accelerator.num_processes == 1:
        return signum
    import torch.distributed as dist

    flag = torch.tensor([signum or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    return int(flag) or None


def gather_to_main(value: Any, accelerator: Any) -> list[Any] | None:
    """Every process's ``value`` (picklable: tensors on the CPU, JSON-able values), in rank order, on the
    main process; None on the others. A collective: every process calls it at the same point."""
    if accelerator.num_processes == 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * accelerator.num_processes
    dist.all_gather_object(values, value)  # an in-memory exchange between this run's processes, never a file
    return values if accelerator.is_main_process else None
