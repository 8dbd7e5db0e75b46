"""Supervised objectives (task types): a head on the fused vector, a target codec, a loss that skips
rows without a label, metrics and decoding. A task type subclasses :class:`SupervisedObjective` and
fills in what differs (output width, loss, decoding); everything else is shared here."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings

if TYPE_CHECKING:
    from mmcli.models.representation import Representation


class SupervisedSettings(ObjectiveSettings):
    """Fields every task has; a task type adds ``type: Literal[name]``, its own settings and
    ``target_codec``."""

    column: str = Field(..., description="manifest column holding the target")
    allow_missing: bool = Field(False, description="rows may have no label (empty or null): the loss and metrics skip "
                                                   "them; otherwise such a row is a bad row, counted and reported")
    hidden: int | None = Field(None, ge=1, description="MLP hidden size of the head; None = one linear layer")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout at the head's input, after model.dropout on the "
                                                         "fused vector (the two compound; set one to 0 for a single one)")

    def target_codec(self, spec: dict | None = None) -> Any:
        """A fresh codec (to fit on the train split), or the one a fitted ``spec`` describes."""
        raise TypeError(f"{type(self).__name__} names no target codec")


def mlp(hidden_size: int, out: int, hidden: int | None, dropout: float) -> nn.Sequential:
    """``[B, hidden_size]`` -> ``[B, out]``: dropout + linear, or dropout + linear + GELU + dropout + linear."""
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, out))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, hidden), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out))


def zero_loss(prediction: Tensor) -> Tensor:
    """A 0 that is still connected to the graph, for batches without any label (mean of nothing is NaN)."""
    return prediction.sum() * 0.0


class SupervisedObjective(Objective):
    """A task on the fused vector. With late fusion (``context.late_inputs``) it keeps one head per
    input and its prediction is the presence-weighted sum of theirs.

    Subclasses set the task from the fitted spec in :meth:`configure` (called before any head is
    built) and implement the abstract methods; ``prediction`` shapes are the subclass's own
    (e.g. logits ``[B, C]``, values ``[B]``).
    """

    supervised = True

    def __init__(self, config: SupervisedSettings, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.configure(config, context.target_spec or {})
        self.hidden_size, self.head_hidden, self.head_dropout = context.hidden_size, config.hidden, config.dropout
        self.fused_width = context.fused_width
        if context.late_inputs:
            # heads created in recipe input order (seeded initialisation), kept sorted like the fusion's inputs
            heads = {name: self.new_head() for name in context.late_inputs}
            self.heads = nn.ModuleDict(dict(sorted(heads.items())))
        else:
            self.head = mlp(self.fused_width, self.out_features(), self.head_hidden, self.head_dropout)

    @abc.abstractmethod
    def configure(self, config: SupervisedSettings, spec: dict) -> None:
        """Read the fitted target spec (classes, mean and std, ...)."""

    @abc.abstractmethod
    def out_features(self) -> int:
        """Width of the head's last layer."""

    def finish(self, raw: Tensor) -> Tensor:
        """The head's ``[B, out_features]`` output as this task's prediction (identity by default)."""
        return raw

    def new_head(self) -> nn.Module:
        """A fresh head ``[B, D] -> [B, out_features]`` with this task's settings (also used by plug-ins
        that add heads of the same task type, such as single-input heads)."""
        return mlp(self.hidden_size, self.out_features(), self.head_hidden, self.head_dropout)

    def predict(self, rep: "Representation") -> Tensor:
        if hasattr(self, "heads"):
            hidden, weights = rep.late_hidden(), rep.late.weights
            total = None
            for index, head in enumerate(self.heads.values()):
                out = self.finish(head(hidden[:, index]))
                term = weights[:, index].view(-1, *([1] * (out.dim() - 1))) * out
                total = term if total is None else total + term
            return total
        return self.finish(self.head(rep.fused_for(self.name)))

    def loss(self, rep: "Representation", batch: dict[str, Tensor]) -> Tensor:
        return self.prediction_loss(self.predict(rep), batch[self.name])

    @abc.abstractmethod
    def prediction_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean loss over the labelled rows (a graph-connected 0 when there is none)."""

    @abc.abstractmethod
    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``[B]`` loss per row, 0 where there is no label."""

    @staticmethod
    @abc.abstractmethod
    def labelled(target: Tensor) -> Tensor:
        """``[B]`` bool: the row has a label."""

    @abc.abstractmethod
    def prior(self, target: Tensor) -> Tensor:
        """The constant prediction with the lowest mean loss on ``target``'s labelled rows."""

    @staticmethod
    @abc.abstractmethod
    def average(predictions: list[Tensor]) -> Tensor:
        """The prediction of an ensemble of ``predictions`` (same shape as one of them)."""

    @abc.abstractmethod
    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        """Per row, a JSON-able answer in the target column's own labels or units."""

    def readout(self, prediction: Tensor) -> Tensor:
        """The answer as a tensor (what an exported model returns): probabilities, or values in the
        target's units. Tensor operations only, so that it traces."""
        return prediction.float()

    def readout_labels(self) -> list[str] | None:
        """What the last axis of :meth:`readout` means (class names), when it has one."""
        return None

    @abc.abstractmethod
    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list, list]:
        """(predictions, references) of the labelled rows, as the metric modules read them."""

    def evaluate(self, outputs: dict[str, Tensor], tensors: dict[str, Tensor]) -> dict[str, Any]:
        """Bundled metrics of ``outputs["prediction"]`` against the split's targets, and the count of
        labelled rows; a diverged model's non-finite predictions are reported, not scored."""
        from mmcli.evaluation.metrics_loader import compute_metrics

        if self.name not in tensors:
            return {}
        prediction = outputs["prediction"]
        finite = torch.isfinite(prediction)
        bad = int((~finite).any(dim=-1).sum()) if prediction.dim() > 1 else int((~finite).sum())
        if bad:
            return {name: None for name in self.metrics} | {"count": len(prediction), "non_finite": bad}
        predictions, references = self.metric_inputs(prediction, tensors[self.name])
        metrics = compute_metrics(list(self.metrics), predictions, references) if len(references) else {}
        metrics["count"] = len(references)
        return metrics
