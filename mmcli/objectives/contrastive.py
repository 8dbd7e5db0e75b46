"""Contrastive objective: symmetric InfoNCE between two inputs' embeddings (or an input and the fused
vector), as in CLIP, with in-batch negatives gathered from every process under data parallelism.

``L = 1/2 [CE(s * A B^T, P) + CE(s * B A^T, P)]`` with ``A``, ``B`` the L2-normalised embeddings of
the rows that have both inputs, ``s = 1/temperature`` (learnable, at most ``1/min_temperature``), and
``P`` the positives of each row: itself, or with ``group_column`` every row with the same group id
(the same caption, the same item), whose similarities are pooled in the numerator instead of being
pushed apart as false negatives (the multi-positive InfoNCE of supervised contrastive learning).
Embeddings are the shared-space projections (``model.shared_space``) when the recipe has them, else
the encoders' pooled vectors. Metrics: retrieval recall@K, median rank and MRR over a whole split, both
directions, with identical texts counted as one gallery entry (:mod:`mmcli.evaluation.retrieval`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.objectives._groups import GroupColumn
from mmcli.objectives._gather import gather_with_local_grad, process_group
from mmcli.models.representation import FUSED
from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings, check_inputs
from mmcli.registries import OBJECTIVES



class ContrastiveConfig(ObjectiveSettings):
    type: Literal["contrastive"] = "contrastive"
    inputs: list[str] = Field(min_length=2, max_length=2, description="the two inputs to align ('fused': the fused vector)")
    temperature: float = Field(0.07, gt=0, description="initial softmax temperature")
    learn_temperature: bool = Field(True, description="learn the temperature with the model (CLIP)")
    min_temperature: float = Field(0.01, gt=0, description="the temperature never goes below this")
    gather: bool = Field(True, description="under several processes, every process's rows are negatives")
    group_column: str | None = Field(None, description="manifest column: rows with the same value are positives "
                                                       "for each other, not negatives")
    recall_at: list[int] = Field(default_factory=lambda: [1, 5, 10], min_length=1, description="K of recall@K")

    @model_validator(mode="after")
    def _distinct(self) -> "ContrastiveConfig":
        if self.inputs[0] == self.inputs[1]:
            raise ValueError("inputs: name two different inputs")
        if self.min_temperature > self.temperature:
            raise ValueError("min_temperature is above temperature")
        return self

    def check(self, recipe: Any, name: str) -> None:
        check_inputs(self.inputs, recipe, f"objectives.{name}.inputs", allowed=(FUSED,))

    def target_columns(self, name: str) -> dict[str, Any]:
        return {group_key(name): GroupColumn(self.group_column)} if self.group_column else {}


def group_key(name: str) -> str:
    return f"{name}_group"


def info_nce(a: Tensor, b: Tensor, valid: Tensor, groups: Tensor, scale: Tensor, grouped: bool = True) -> Tensor:
    """Symmetric multi-positive InfoNCE over the ``valid`` rows: ``a``, ``b`` ``[N, P]`` normalised,
    ``groups [N]`` (rows with equal ids are positives; ``grouped`` False: every row its own group, the
    plain cross-entropy form), ``scale`` the inverse temperature. 0 when no row is valid. No host sync:
    invalid rows are masked, not removed."""
    logits = scale * a @ b.T
    floor = torch.finfo(logits.dtype).min
    keys = ~valid.unsqueeze(0)
    count = valid.sum().clamp(min=1)
    if not grouped:
        labels = torch.where(valid, torch.arange(len(logits), device=logits.device), -100)
        forward = F.cross_entropy(logits.masked_fill(keys, floor), labels, ignore_index=-100, reduction="sum")
        backward = F.cross_entropy(logits.T.masked_fill(keys, floor), labels, ignore_index=-100, reduction="sum")
        return (forward + backward) / 2 / count
    positive = (groups.unsqueeze(0) == groups.unsqueeze(1)) & ~keys & valid.unsqueeze(1)

    def direction(matrix: Tensor) -> Tensor:
        everything = matrix.masked_fill(keys, floor).logsumexp(dim=1)
        positives = matrix.masked_fill(~positive, floor).logsumexp(dim=1)
        return everything - positives

    per_row = (direction(logits) + direction(logits.T)) / 2
    return torch.where(valid, per_row, torch.zeros_like(per_row)).sum() / count


@OBJECTIVES.register("contrastive", ContrastiveConfig)
class Contrastive(Objective):
    main_metric = "recall@1"

    def __init__(self, config: ContrastiveConfig, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.first, self.second = config.inputs
        self.text_inputs = {name for name, modality in context.inputs.items() if modality == "text"}
        self.gather, self.recall_at = config.gather, sorted(config.recall_at)
        self.grouped = config.group_column is not None
        self.max_log_scale = math.log(1 / config.min_temperature)
        log_scale = torch.tensor(math.log(1 / config.temperature))
        if config.learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        # the fused vector meets shared-space embeddings through a projection of its own
        self.fused_projection = nn.Linear(context.fused_width, context.shared_size) \
            if FUSED in config.inputs and context.shared_size else None
        self.reads_fusion = FUSED in config.inputs
        directions = (f"{self.first}_to_{self.second}", f"{self.second}_to_{self.first}")
        self.metrics = {f"{metric}{suffix}": metric != "median_rank"
                        for metric in (*(f"recall@{k}" for k in self.recall_at), "median_rank", "mrr")
                        for suffix in ("", *(f"_{d}" for d in directions))}

    @property
    def pair(self) -> tuple[str, str]:
        """The two inputs this objective aligns (``fused``: the fused vector)."""
        return self.first, self.second

    def _embedding(self, rep: Any, name: str) -> tuple[Tensor, Tensor]:
        vector, present = rep.embedding(name)
        if name == FUSED and self.fused_projection is not None:
            vector = self.fused_projection(vector)
        return vector, present

    def embed(self, rep: Any, name: str) -> tuple[Tensor, Tensor]:
        """``(normalised [B, P] embeddings, present [B])`` of input ``name`` in this objective's space: what
        retrieval and zero-shot classification compare."""
        vector, present = self._embedding(rep, name)
        return F.normalize(vector.float(), dim=-1), present

    def scale(self) -> Tensor:
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def _groups(self, batch: dict[str, Tensor], rows: int, device: torch.device) -> Tensor:
        """Group ids, a row without one in a group of its own (ids below -1 never collide with hashes)."""
        own = -2 - torch.arange(rows, device=device)
        if not self.grouped:
            return own
        groups = batch[group_key(self.name)]
        return torch.where(groups >= 0, groups, own)

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor | None:
        a, present_a = self._embedding(rep, self.first)
        b, present_b = self._embedding(rep, self.second)
        a, b = F.normalize(a.float(), dim=-1), F.normalize(b.float(), dim=-1)
        valid = present_a & present_b
        groups = self._groups(batch, len(a), a.device)
        rank, world = process_group()
        if self.gather and self.training and world > 1:
            groups = torch.where(groups < -1, groups - rank * len(a), groups)  # own groups stay unique across processes
            a, b = gather_with_local_grad(a), gather_with_local_grad(b)
            valid = gather_with_local_grad(valid.long()).bool()
            groups = gather_with_local_grad(groups)
        else:
            world = 1
        loss = info_nce(a, b, valid, groups, self.scale(), grouped=self.grouped)
        # every process computes the loss of the whole gathered batch, with gradients only through its own
        # rows; DDP averages the processes' gradients, so scale them by the world size to get exactly the
        # one-process gradient (the value stays the loss itself)
        return loss if world == 1 else loss + (world - 1) * (loss - loss.detach())

    def outputs(self, rep: Any) -> dict[str, Tensor]:
        a, present_a = self._embedding(rep, self.first)
        b, present_b = self._embedding(rep, self.second)
        return {"a": F.normalize(a.float(), dim=-1), "b": F.normalize(b.float(), dim=-1),
                "valid": (present_a & present_b).float()}

    def evaluate(self, outputs: dict[str, Tensor], tensors: dict[str, Tensor]) -> dict[str, Any]:
        from mmcli.evaluation.retrieval import content_keys, retrieval_metrics

        if not outputs:
            return {}
        valid = outputs["valid"].bool()
        if not bool(valid.any()):
            return {}
        a, b = outputs["a"][valid], outputs["b"][valid]
        rows = torch.arange(len(a))
        if self.grouped and group_key(self.name) in tensors:
            groups = tensors[group_key(self.name)][valid]
            groups = torch.where(groups >= 0, groups, -2 - rows)
        else:
            groups = rows
        # identical texts are one gallery entry and one query; other inputs' rows are each their own
        keys = {name: content_keys(tensors[name][valid]) if name in self.text_inputs and name in tensors else rows
                for name in (self.first, self.second)}
        names = (f"{self.first}_to_{self.second}", f"{self.second}_to_{self.first}")
        forward = retrieval_metrics(a, b, keys[self.first], keys[self.second], groups, self.recall_at)
        backward = retrieval_metrics(b, a, keys[self.second], keys[self.first], groups, self.recall_at)
        metrics: dict[str, Any] = {}
        for metric in (*(f"recall@{k}" for k in self.recall_at), "median_rank", "mrr"):
            metrics[metric] = (forward[metric] + backward[metric]) / 2
            metrics[f"{metric}_{names[0]}"], metrics[f"{metric}_{names[1]}"] = forward[metric], backward[metric]
        metrics["temperature"] = float(1 / self.scale().detach())
        metrics["count"] = len(a)
        metrics["gallery"] = {names[0]: forward["gallery"], names[1]: backward["gallery"]}
        return metrics
