"""Embeddings in a retrieval objective's space (the contrastive objective's shared space): any rows,
including rows that hold only the one input being embedded (a text alone, an image alone)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mmcli.data.loader import ROW_COLUMN, ShardedBatchSampler, batch_loader
from mmcli.errors import DataError


def retrieval_objectives(model: Any) -> dict[str, Any]:
    """The model's objectives that embed two inputs into one space (``embed`` and ``pair``)."""
    return {name: objective for name, objective in model.objectives.items()
            if callable(getattr(objective, "embed", None)) and hasattr(objective, "pair")}


def retrieval_objective(model: Any, name: str | None = None) -> tuple[str, Any]:
    """``(name, objective)``: the one named, or the model's only retrieval objective."""
    found = retrieval_objectives(model)
    if not found:
        raise DataError("this run has no retrieval objective (a contrastive objective that embeds two inputs into "
                        "one space), so it cannot embed queries and a gallery side by side",
                        hint="train with objectives: {NAME: {type: contrastive, inputs: [image, caption]}}")
    if name is None:
        if len(found) > 1:
            raise DataError(f"this run has several retrieval objectives ({', '.join(found)})", hint="choose one with --objective")
        name = next(iter(found))
    if name not in found:
        raise DataError(f"--objective: '{name}' is not a retrieval objective of this run (known: {', '.join(found)})")
    return name, found[name]


@torch.no_grad()
def embed_tensors(model: Any, objective: Any, input_name: str, tensors: dict[str, Tensor], batch_size: int,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """``(embeddings [N, P] normalised, present [N])`` of ``input_name`` for every row of ``tensors``."""
    model.eval()
    parts, present = [], []
    sampler = ShardedBatchSampler(len(tensors[ROW_COLUMN]), batch_size, shuffle=False)
    for batch in batch_loader(tensors, sampler):
        batch = {key: value.to(device) for key, value in batch.items()}
        vectors, rows = objective.embed(model.backbone(batch), input_name)
        parts.append(vectors.float().cpu())
        present.append(rows.cpu())
    if not parts:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.bool)
    return torch.cat(parts), torch.cat(present)
