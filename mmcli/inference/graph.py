"""The model as one function of tensors, for export: decoded input tensors in, each supervised
objective's answer out (probabilities, or values in the target's units), wrappers applied."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mmcli.inference.predictor import infer_batch


class PredictionGraph(nn.Module):
    """``forward(*tensors)`` with ``tensors`` in :attr:`input_names` order (the batch keys the
    preprocessing wrote: ``image``, ``image_mask``, ``text``, ...) -> one tensor per name in
    :attr:`output_names` (the supervised objectives)."""

    def __init__(self, model: Any, input_names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = list(input_names)
        self.output_names = list(model.tasks)

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        _, predictions, _ = infer_batch(self.model, dict(zip(self.input_names, tensors)))
        return tuple(self.model.tasks[name].readout(predictions[name]) for name in self.output_names)
