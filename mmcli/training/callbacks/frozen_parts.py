"""Parts that never train (``training.freeze``, the weights adapters adapt, frozen pretrained towers) stay
in evaluation mode while the rest trains: no dropout, and fixed BatchNorm statistics, in every module none
of whose parameters trains."""

from __future__ import annotations

from typing import Any

from torch import nn

from mmcli.training.callbacks.base import Callback


def frozen_subtrees(model: nn.Module) -> list[nn.Module]:
    """The largest submodules that have parameters and none that trains."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        parameters = list(module.parameters())
        if parameters and not any(p.requires_grad for p in parameters):
            found.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


class KeepFrozenInEvaluation(Callback):
    def on_epoch_begin(self, run: Any) -> None:
        for module in frozen_subtrees(run.model):
            module.eval()
