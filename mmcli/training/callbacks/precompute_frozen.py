"""Frozen pretrained towers run once per row, not once per step: before training, every encoder that
offers ``precompute`` and is frozen computes its outputs for the train and validation rows, which the
batches then carry (``NAME__precomputed``) in place of the raw input. A frozen tower's outputs never
change, so training is the same, minus the tower's forward pass at every step."""

from __future__ import annotations

from typing import Any

import torch

from mmcli.data.loader import ROW_COLUMN, ShardedBatchSampler, batch_loader
from mmcli.models.backbone import PRECOMPUTED
from mmcli.training.callbacks.base import Callback


class PrecomputeFrozen(Callback):
    def on_train_begin(self, run: Any) -> None:
        towers = [(name, encoder) for name, encoder in run.model.backbone.encoders.items()
                  if getattr(encoder, "frozen", False) and hasattr(encoder, "precompute")]
        if not towers:
            return
        with run.gathered_weights():  # under FSDP every process computes the outputs with whole weights
            for name, encoder in towers:
                for tensors in (run.train, run.validation):
                    if tensors is not None:
                        tensors[name + PRECOMPUTED] = _precompute(encoder, name, tensors, run)


@torch.no_grad()
def _precompute(encoder: Any, name: str, tensors: dict[str, torch.Tensor], run: Any) -> torch.Tensor:
    sampler = ShardedBatchSampler(len(tensors[ROW_COLUMN]), run.recipe.training.eval_batch_size, shuffle=False)
    parts = []
    for batch in batch_loader({name: tensors[name], f"{name}_mask": tensors[f"{name}_mask"], ROW_COLUMN: tensors[ROW_COLUMN]},
                              sampler):
        parts.append(encoder.precompute(batch[name].to(run.device), batch[f"{name}_mask"].to(run.device)).cpu())
    return torch.cat(parts)
