"""``training.freeze_encoders``: the encoders' weights stay as initialised (no gradient) and their
BatchNorm statistics fixed (evaluation mode) for the first N epochs, or always (a linear probe).
Everything else trains. The module keeps requiring gradients where it was wrapped, so a data-parallel
wrapper built before the freeze still reduces them once they are released."""

from __future__ import annotations

from typing import Any

from mmcli.training.callbacks.base import Callback


class FreezeEncoders(Callback):
    def __init__(self, epochs: int | str) -> None:
        self.epochs = epochs

    def frozen(self, run: Any) -> bool:
        return self.epochs == "always" or run.state["epoch"] <= int(self.epochs)

    def on_epoch_begin(self, run: Any) -> None:
        frozen = self.frozen(run)
        encoders = run.model.backbone.encoders
        for parameter in encoders.parameters():
            parameter.requires_grad_(not frozen)
        if frozen:
            encoders.eval()

    def on_after_backward(self, run: Any) -> None:
        # under data parallelism the wrapper may still hand frozen weights a zero gradient, which
        # AdamW's weight decay would act on: frozen means no gradient at all
        if self.frozen(run):
            for parameter in run.model.backbone.encoders.parameters():
                parameter.grad = None
