"""Auxiliary unimodal heads (``model.unimodal_loss``): each encoder's own vector also predicts every
task, as in a single-modality model, so that no encoder is left under-trained because the fused
heads learnt to lean on the other inputs (modality imbalance; Wang et al. 2020 "What makes training
multi-modal classification networks hard?", Peng et al. 2022 OGM-GE). A training loss; the
missing-input fallback also answers from these heads."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from mmcli.objectives.base import Objective

NAME = "unimodal"


class UnimodalObjective(Objective):
    """``heads[input][task]``: a head of the task's own type on ``encoded[input].pooled``; the loss is the
    mean over inputs of ``sum_t weight_t * loss_t``, each on the rows where the input is present."""

    in_validation_loss = False  # a training aid: the monitor compares the fused model with itself

    def __init__(self, weight: float, tasks: dict[str, Any], inputs: list[str]) -> None:
        super().__init__(NAME, weight)
        self._tasks = dict(tasks)  # plain dict: the tasks are the model's modules, not this one's
        self.heads = nn.ModuleDict({name: nn.ModuleDict({task: objective.new_head() for task, objective in tasks.items()})
                                    for name in inputs})

    def predict(self, name: str, task: str, pooled: Tensor) -> Tensor:
        """Task ``task``'s prediction from input ``name``'s vector alone: ``pooled [B, D]``."""
        return self._tasks[task].finish(self.heads[name][task](pooled))

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor:
        # a hidden or absent input's "missing" vector predicts nothing; scoring it would only teach the prior
        total = None
        for name, per_task in self.heads.items():
            present = rep.encoded[name].present
            pooled = rep.encoded[name].pooled[present]
            for task in per_task:
                objective = self._tasks[task]
                term = objective.weight * objective.prediction_loss(self.predict(name, task, pooled), batch[task][present])
                total = term if total is None else total + term
        return total / len(self.heads)
