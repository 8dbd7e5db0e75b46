"""Auxiliary unimodal heads: each encoder's own vector also predicts every task, as in a
single-modality model, so that no encoder is left under-trained because the fused heads learnt
to lean on the other inputs (modality imbalance; Wang et al. 2020 "What makes training multi-modal
classification networks hard?", Peng et al. 2022 OGM-GE). Used for the training loss only."""

from __future__ import annotations

from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput


class UnimodalHeads(nn.Module):
    """``heads[input][task]``: a task head of the task's own type on ``encoded[input].pooled``."""

    def __init__(self, heads: dict[str, dict[str, nn.Module]]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({name: nn.ModuleDict(per_task) for name, per_task in heads.items()})

    def loss(self, encoded: dict[str, EncoderOutput], batch: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
        """Mean over inputs of ``sum_t weight_t * loss_t``, each on the rows where the input is present
        (a hidden or absent input's "missing" vector predicts nothing; scoring it would only teach the prior)."""
        total = None
        for name, per_task in self.heads.items():
            present = encoded[name].present
            pooled = encoded[name].pooled[present]
            for task, head in per_task.items():
                term = weights[task] * head.loss(head(pooled), batch[task][present])
                total = term if total is None else total + term
        return total / len(self.heads)
