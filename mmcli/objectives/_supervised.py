"""Supervised objectives (task types). A task type predicts a manifest column: it owns the column's
target codec (in its own file), trains with ``loss(rep, batch)``, answers with ``predict(rep, batch,
**decoding)`` (one pass for a classifier, a search for a text decoder), gathers its answers over a
split with its own ``collate`` (padding, lists), turns them into JSON (``decode``) and scores them
(``evaluate``). :class:`HeadTask` is the common case: a head on the fused vector.

Target codecs (torch-free; preprocess fits them on the train split and encodes every row):
``fit(values) -> codec``, ``encode(values) -> np.ndarray`` (first axis: rows; raises
:class:`mmcli.errors.BadValue` for a value it cannot use: a counted bad row), ``labelled(encoded) ->
bool [N]`` (rows with a label), ``missing`` (the encoded value of a row without one), ``dtype``,
``feature()`` (the Arrow type of one row), ``spec()`` / ``from_spec(spec)``."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.cells import label_key, sort_key
from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings

if TYPE_CHECKING:
    from mmcli.models.representation import Representation

UNKNOWN_CATEGORY = -1  # a report_by value that did not occur in the train split (counted apart)


def report_key(task: str) -> str:
    """The batch key of a task's ``report_by`` categories (never an input or task name: those have no '__')."""
    return f"{task}__by"


class Categories:
    """Codec of a ``report_by`` column: the train split's values as indices; an unseen or missing value is
    -1 (its rows count in the task's metrics, not in any category's). Never a bad row."""

    missing = UNKNOWN_CATEGORY
    dtype = np.int64

    def __init__(self, names: list[str] | None = None) -> None:
        self._set(list(names or []))

    def _set(self, names: list[str]) -> None:
        self.names, self._index = names, {name: i for i, name in enumerate(names)}

    def fit(self, values: Any) -> "Categories":
        self._set(sorted({key for key in map(label_key, values) if key is not None}, key=sort_key))
        return self

    def encode(self, values: Any) -> np.ndarray:
        return np.asarray([self._index.get(label_key(v), UNKNOWN_CATEGORY) for v in values], dtype=np.int64)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return np.ones(len(encoded), dtype=bool)

    def spec(self) -> dict[str, Any]:
        return {"categories": list(self.names)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "Categories":
        return cls(spec.get("categories", []))

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("int64")


class CategoryColumn:
    """The column a task's metrics are also reported by (``report_by``)."""

    type = "categories"

    def __init__(self, column: str) -> None:
        self.column = column

    def target_codec(self, spec: dict | None = None) -> Categories:
        return Categories.from_spec(spec) if spec is not None else Categories()


class SupervisedSettings(ObjectiveSettings):
    """Fields every task has; a task type adds ``type: Literal[name]``, its own settings and
    ``target_codec``."""

    column: str = Field(..., description="manifest column holding the target")
    allow_missing: bool = Field(False, description="rows may have no label (empty or null): the loss and metrics skip "
                                                   "them; otherwise such a row is a bad row, counted and reported")
    report_by: str | None = Field(None, description="a manifest column (e.g. question_type): the task's metrics are "
                                                    "also reported per value of it")

    def target_codec(self, spec: dict | None = None) -> Any:
        """A fresh codec (to fit on the train split), or the one a fitted ``spec`` describes."""
        raise TypeError(f"{type(self).__name__} names no target codec")

    def codec_settings(self) -> dict[str, Any]:
        """What the preprocessing cache key holds of this task: everything that changes how its column is
        encoded (a task type with codec settings adds them)."""
        settings = {"type": self.type, "column": self.column}  # type: ignore[attr-defined]
        return settings | ({"report_by": self.report_by} if self.report_by else {})

    def target_columns(self, name: str) -> dict[str, Any]:
        return {report_key(name): CategoryColumn(self.report_by)} if self.report_by else {}


class SupervisedObjective(Objective):
    """A task: predicts its column from the representation. ``exportable``: its answer is a fixed-shape
    tensor function of the inputs (``readout``), so ``mmcli export`` can trace it."""

    supervised = True
    exportable: ClassVar[bool] = True

    def __init__(self, config: SupervisedSettings, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.report_column = config.report_by
        spec = context.target_specs.get(report_key(context.name)) if config.report_by else None
        self.report_categories = Categories.from_spec(spec or {}).names

    @abc.abstractmethod
    def predict(self, rep: "Representation", batch: dict[str, Tensor] | None = None, **decoding: Any) -> Tensor:
        """The answer for each row of the batch (logits ``[B, C]``, values ``[B]``, token ids ``[B, L]``, ...);
        ``decoding``: the task's own search settings (see :meth:`decoding_options`)."""

    def decoding_options(self) -> dict[str, Any]:
        """The decoding settings ``predict`` takes, with their defaults (none for a one-pass task)."""
        return {}

    def collate(self, chunks: list[Tensor]) -> Tensor:
        """Per-batch predictions -> one tensor for the split (CPU)."""
        return torch.cat([chunk.float().cpu() for chunk in chunks])

    @abc.abstractmethod
    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        """Per row, a JSON-able answer in the target column's own labels, units or words."""

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

    def score(self, prediction: Tensor, target: Tensor) -> dict[str, Any]:
        """The task's metrics on these rows (bundled metric modules) and the count of labelled rows."""
        from mmcli.evaluation.metrics_loader import compute_metrics

        predictions, references = self.metric_inputs(prediction, target)
        metrics = compute_metrics(list(self.metrics), predictions, references) if len(references) else {}
        metrics["count"] = len(references)
        return metrics

    def evaluate(self, outputs: dict[str, Tensor], tensors: dict[str, Tensor]) -> dict[str, Any]:
        """:meth:`score` of ``outputs["prediction"]`` against the split's targets (and per ``report_by``
        category); a diverged model's non-finite predictions are reported, not scored."""
        if self.name not in tensors:
            return {}
        prediction, target = outputs["prediction"], tensors[self.name]
        if prediction.is_floating_point():
            finite = torch.isfinite(prediction)
            bad = int((~finite).any(dim=-1).sum()) if prediction.dim() > 1 else int((~finite).sum())
            if bad:
                return {name: None for name in self.metrics} | {"count": len(prediction), "non_finite": bad}
        metrics = self.score(prediction, target)
        key = report_key(self.name)
        if self.report_column and key in tensors:
            categories = tensors[key]
            metrics[f"by_{self.report_column}"] = {
                name: self.score(prediction[categories == index], target[categories == index])
                for index, name in enumerate(self.report_categories) if bool((categories == index).any())}
        return metrics


class HeadSettings(SupervisedSettings):
    """A task answered by a head on the fused vector."""

    hidden: int | None = Field(None, ge=1, description="MLP hidden size of the head; None = one linear layer")
    dropout: float = Field(0.0, ge=0, lt=1, description="more dropout at the head's input, on top of model.dropout on "
                                                         "the fused vector (default none: one dropout, model.dropout)")


def mlp(hidden_size: int, out: int, hidden: int | None, dropout: float) -> nn.Sequential:
    """``[B, hidden_size]`` -> ``[B, out]``: dropout + linear, or dropout + linear + GELU + dropout + linear."""
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, out))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, hidden), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(hidden, out))


def zero_loss(prediction: Tensor) -> Tensor:
    """A 0 that is still connected to the graph, for batches without any label (mean of nothing is NaN)."""
    return prediction.sum() * 0.0


class HeadTask(SupervisedObjective):
    """A task on the fused vector. With late fusion (``context.late_inputs``) it keeps one head per
    input and its prediction is the presence-weighted sum of theirs.

    Subclasses set the task from the fitted spec in :meth:`configure` (called before any head is
    built) and implement :meth:`out_features` and :meth:`prediction_loss`; ``prediction`` shapes are
    the subclass's own (e.g. logits ``[B, C]``, values ``[B]``).
    """

    def __init__(self, config: HeadSettings, context: BuildContext) -> None:
        super().__init__(config, context)
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
    def configure(self, config: HeadSettings, spec: dict) -> None:
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

    def predict(self, rep: "Representation", batch: dict[str, Tensor] | None = None, **decoding: Any) -> Tensor:
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
        return self.prediction_loss(self.predict(rep, batch), batch[self.name])

    @abc.abstractmethod
    def prediction_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Mean loss over the labelled rows (a graph-connected 0 when there is none)."""
