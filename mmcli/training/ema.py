"""``training.ema``: an exponential moving average of the weights, updated after every optimizer step on
the device with one fused ``torch._foreach_lerp_`` (no host sync; under FSDP on each process's shards). Validation, the best checkpoint and
so the final model use the average; full checkpoints keep it beside the live weights for exact resume."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def _local(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Plain tensors to compute on: this process's part of a sharded one (FSDP), which is a view of it."""
    from torch.distributed.tensor import DTensor

    return [t.to_local() if isinstance(t, DTensor) else t.detach() for t in tensors]


class WeightAverage:
    """The average of the parameters that train when it is created (frozen ones never change) and of
    the floating-point buffers (BatchNorm statistics), each a tensor shaped like its weight:
    ``average = decay * average + (1 - decay) * weight``, starting from the weights at creation."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        named += [(name, b) for name, b in model.named_buffers() if torch.is_floating_point(b)]
        self.names = [name for name, _ in named]
        self.live = [tensor for _, tensor in named]
        self.average = [tensor.detach().clone() for tensor in self.live]

    @torch.no_grad()
    def update(self) -> None:
        """After an optimizer step: move the average towards the weights by ``1 - decay``."""
        torch._foreach_lerp_(_local(self.average), _local(self.live), 1.0 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block (validation, saving the best), then the live
        ones again, bit for bit."""
        live = _local(self.live)
        with torch.no_grad():
            kept = [tensor.clone() for tensor in live]
            torch._foreach_copy_(live, _local(self.average))
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, kept)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """name -> averaged tensor (what a full checkpoint saves; whole, also when sharded: a collective
        under FSDP)."""
        from mmcli.training.sharding import full_tensors

        return full_tensors(dict(zip(self.names, self.average)))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != set(self.names):
            missing = sorted(set(self.names) ^ set(state))
            raise ValueError(f"the saved moving average does not fit this model ({len(missing)} weights differ, "
                             f"e.g. {missing[0]})")
        from mmcli.training.sharding import copy_into_shards

        copy_into_shards(self.average, [state[name] for name in self.names])
