"""Hands each epoch's mean training losses to a loss weighting that adapts by epoch (``end_epoch``,
e.g. dynamic weight average); records every epoch's effective weights in the history."""

from __future__ import annotations

from typing import Any

from mmcli.training.callbacks.base import Callback


class WeightingSchedule(Callback):
    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        weighting = run.model.weighting
        if hasattr(weighting, "end_epoch"):
            weighting.end_epoch(record["train_losses"])
