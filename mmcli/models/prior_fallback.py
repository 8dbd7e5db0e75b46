"""Prior fallback: when an input a task cannot do without is missing, the task predicts its prior
(the constant that minimises its loss on the training labels) instead of guessing from the rest.

A fused model trained with modality dropout still produces *some* answer for ``size`` when the
only input that knows size is missing, and that answer moves with inputs that know nothing about
size: it has fitted noise on the few training rows where the input was dropped. A single-modality
model of the remaining inputs, which never saw the signal, predicts a near-constant and beats it.
Whether a task can do without an input is measured, not assumed: after training, on the
validation split with the input removed from every row, the per-row loss of the model is compared
with the prior's. The model keeps answering only where it beats the prior with confidence
(one-sided, paired over rows); otherwise rows missing that input get the prior for that task.
Validation rows, not training rows, decide: on the training rows the model is fitted and would
always look better than the prior.

Rows answered by the prior are reported (``ModelOutput.answered_by_prior``, ``answered_by_prior``
in metrics and predictions). Inputs made missing by the corruption gate count as missing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PriorFallback(nn.Module):
    """Buffers: ``fallback [inputs, tasks]`` (bool: input missing -> task answers its prior) and
    ``priors.<task>`` (the task's constant prediction). Both start as "never" and "no labels" and are
    set by :func:`mmcli.training.prior_calibration.calibrate_prior_fallback` after training."""

    def __init__(self, input_names: list[str], tasks: dict[str, nn.Module], confidence: float = 0.95) -> None:
        super().__init__()
        self.input_names, self.task_names, self.confidence = list(input_names), list(tasks), confidence
        self.register_buffer("fallback", torch.zeros(len(self.input_names), len(self.task_names), dtype=torch.bool))
        self.priors = nn.Module()
        for name, head in tasks.items():
            self.priors.register_buffer(name, head.prior(torch.empty(0)))

    def prior(self, task: str) -> Tensor:
        return getattr(self.priors, task)

    def set(self, priors: dict[str, Tensor], fallback: dict[tuple[str, str], bool]) -> None:
        for task, value in priors.items():
            self.prior(task).copy_(value)
        for (name, task), use in fallback.items():
            self.fallback[self.input_names.index(name), self.task_names.index(task)] = use

    def apply(self, predictions: dict[str, Tensor], present: dict[str, Tensor]
              ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(predictions, answered)``: rows missing an input their task cannot do without get the
        task's prior; ``answered``: task -> ``[B]`` bool, the rows that did."""
        out, answered = dict(predictions), {}
        for j, task in enumerate(self.task_names):
            rows = torch.zeros_like(next(iter(present.values())))
            for i, name in enumerate(self.input_names):
                if self.fallback[i, j]:
                    rows = rows | ~present[name]
            answered[task] = rows
            if rows.any():
                value = out[task].clone()
                value[rows] = self.prior(task).to(value.dtype)
                out[task] = value
        return out, answered
