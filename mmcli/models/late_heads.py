"""Task heads for late fusion: one head per input, predictions combined by presence weights."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class LateTaskHeads(nn.Module):
    """Wraps one task's per-input heads (sorted input order, matching ``LateFusion.per_modality``).

    ``forward(vectors [B, M, D], weights [B, M])`` -> the weighted sum of the heads' outputs;
    loss, decoding and metrics are the task type's own (delegated to the first head).
    """

    def __init__(self, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(dict(sorted(heads.items())))
        first = next(iter(self.heads.values()))
        self.metrics, self.main_metric, self.greater_is_better = first.metrics, first.main_metric, first.greater_is_better

    def _first(self) -> Any:
        return next(iter(self.heads.values()))

    def forward(self, vectors: Tensor, weights: Tensor) -> Tensor:
        total = None
        for index, head in enumerate(self.heads.values()):
            out = head(vectors[:, index])
            term = weights[:, index].view(-1, *([1] * (out.dim() - 1))) * out
            total = term if total is None else total + term
        return total

    def loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self._first().loss(prediction, target)

    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self._first().row_loss(prediction, target)

    def prior(self, target: Tensor) -> Tensor:
        return self._first().prior(target)

    def labelled(self, target: Tensor) -> Tensor:
        return self._first().labelled(target)

    def decode(self, prediction: Tensor) -> list[dict]:
        return self._first().decode(prediction)

    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list, list]:
        return self._first().metric_inputs(prediction, target)
