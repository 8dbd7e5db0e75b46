"""Matching (image-text matching in ALBEF and BLIP): a classifier on the fused vector tells a row's
own pair of inputs from a mismatched one. The mismatched pairs are hard negatives: for each row, the
other input of another row drawn in proportion to their embeddings' similarity (the contrastive
objective's similarity, ``exp(cosine / temperature)``), never a row of the same group, in both
directions. A mismatched pair is fused exactly as a real one (the cross-modal attention block and
the fusion see it), so the classifier learns whether the two inputs belong together."""

from __future__ import annotations

import weakref
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.objectives._groups import GroupColumn
from mmcli.models.outputs import EncoderOutput
from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings, accuracy_of, check_inputs
from mmcli.registries import OBJECTIVES


class MatchingConfig(ObjectiveSettings):
    type: Literal["matching"] = "matching"
    inputs: list[str] = Field(min_length=2, max_length=2, description="the two inputs whose pairing is judged")
    temperature: float = Field(0.07, gt=0, description="sharpness of the hard-negative draw")
    group_column: str | None = Field(None, description="manifest column: rows with the same value are never "
                                                       "each other's negatives")
    hidden: int = Field(64, ge=1, description="hidden width of the classifier")

    @model_validator(mode="after")
    def _distinct(self) -> "MatchingConfig":
        if self.inputs[0] == self.inputs[1]:
            raise ValueError("inputs: name two different inputs")
        return self

    def check(self, recipe: Any, name: str) -> None:
        check_inputs(self.inputs, recipe, f"objectives.{name}.inputs")

    def target_columns(self, name: str) -> dict[str, Any]:
        return {f"{name}_group": GroupColumn(self.group_column)} if self.group_column else {}


def _take(output: EncoderOutput, rows: Tensor) -> EncoderOutput:
    return EncoderOutput(tokens=output.tokens[rows], mask=output.mask[rows], pooled=output.pooled[rows])


@OBJECTIVES.register("matching", MatchingConfig)
class Matching(Objective):
    metrics = {"matching_accuracy": True}
    main_metric = "matching_accuracy"

    def __init__(self, config: MatchingConfig, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.first, self.second = config.inputs
        self.temperature, self.grouped = config.temperature, config.group_column is not None
        self.classifier = nn.Sequential(nn.Linear(context.fused_width, config.hidden), nn.GELU(), nn.Linear(config.hidden, 2))
        self._model: Any = None

    def attach(self, model: nn.Module) -> None:
        self._model = weakref.ref(model)

    def _negatives(self, rep: Any, both: Tensor, groups: Tensor, hard: bool) -> tuple[Tensor, Tensor]:
        """For every row, the row whose second input (and the row whose first input) makes its
        mismatched pair: drawn by similarity while training, the next row in evaluation (fixed)."""
        rows = len(both)
        if not hard:
            shifted = (torch.arange(rows, device=both.device) + 1) % rows
            return shifted, shifted
        a, _ = rep.embedding(self.first)
        b, _ = rep.embedding(self.second)
        similarity = F.normalize(a.float().detach(), dim=-1) @ F.normalize(b.float().detach(), dim=-1).T
        allowed = (groups.unsqueeze(0) != groups.unsqueeze(1)) & both.unsqueeze(0) & both.unsqueeze(1)
        return self._draw(similarity, allowed), self._draw(similarity.T, allowed)

    def _draw(self, similarity: Tensor, allowed: Tensor) -> Tensor:
        weights = (similarity / self.temperature).softmax(dim=1) * allowed
        empty = weights.sum(dim=1) == 0  # no allowed candidate (all of one group): any other row
        if empty.any():
            others = 1 - torch.eye(len(weights), device=weights.device)
            weights = torch.where(empty.unsqueeze(1), others, weights)
        return torch.multinomial(weights, 1).squeeze(1)

    def _groups(self, batch: dict[str, Tensor], rows: int, device: torch.device) -> Tensor:
        own = -2 - torch.arange(rows, device=device)
        if not self.grouped:
            return own
        groups = batch[f"{self.name}_group"]
        return torch.where(groups >= 0, groups, own)

    def _scores(self, rep: Any, batch: dict[str, Tensor], hard: bool) -> tuple[Tensor, Tensor] | None:
        """(logits ``[R, 2]``, labels ``[R]``: 1 for a real pair) over real and mismatched pairs."""
        model = self._model()
        both = rep.encoded[self.first].present & rep.encoded[self.second].present
        if int(both.sum()) < 2:
            return None
        rows = both.nonzero().squeeze(1)
        groups = self._groups(batch, len(both), both.device) if batch else -2 - torch.arange(len(both), device=both.device)
        second, first = self._negatives(rep, both, groups, hard)
        swap_second = {**rep.encoded, self.second: _take(rep.encoded[self.second], second)}
        swap_first = {**rep.encoded, self.first: _take(rep.encoded[self.first], first)}
        fused = [rep.fused[rows]] + [model.backbone.fuse(encoded).fused[rows] for encoded in (swap_second, swap_first)]
        logits = self.classifier(torch.cat(fused))
        labels = torch.cat([torch.ones(len(rows)), torch.zeros(2 * len(rows))]).long().to(logits.device)
        return logits, labels

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor | None:
        scored = self._scores(rep, batch, hard=self.training)
        if scored is None:
            return None
        logits, labels = scored
        return F.cross_entropy(logits.float(), labels)

    def outputs(self, rep: Any) -> dict[str, Tensor]:
        """Per row: whether the classifier judged its real pair and its two fixed mismatched pairs (the
        next row's inputs) right; -1 where the row lacks an input. (With groups, the next row may be of
        the same group: a few of these pairs are not mismatched.)"""
        scored = self._scores(rep, {}, hard=False)
        both = rep.encoded[self.first].present & rep.encoded[self.second].present
        right = torch.full((len(both), 3), -1.0, device=both.device)
        if scored is not None:
            logits, labels = scored
            right[both] = (logits.argmax(dim=-1) == labels).float().view(3, -1).T
        return {"right": right}

    def evaluate(self, outputs: dict[str, Tensor], tensors: dict[str, Tensor]) -> dict[str, Any]:
        found = accuracy_of(outputs["right"]) if outputs else None
        if found is None:
            return {}
        return {"matching_accuracy": found[0], "count": found[1]}
