"""Gated multimodal unit (GMU, Arevalo et al. 2017) generalised to M modalities."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput, FusionOutput, masked_softmax
from mmcli.registries import FUSIONS
from mmcli.settings import Settings


class GatedFusionConfig(Settings):
    type: Literal["gated"] = "gated"
    per_task: bool = Field(False, description=(
        "one set of gates per task (multi-gate, as in MMoE): each task mixes the inputs its own way, so a "
        "task that needs one input is not disturbed by the gates another task needs"))


@FUSIONS.register("gated", GatedFusionConfig)
class GatedFusion(nn.Module):
    """``h_m = tanh(W_m x_m)``, ``z = softmax_m(W_z [x_1; ...; x_M])`` per feature, output ``sum_m z_m ⊙ h_m``.

    The gates are per feature (``z [B, M, D]``), as in the seed's ``g ⊙ X_t + (1 - g) ⊙ X_v``:
    one scalar gate per modality would force the fused vector to favour one modality as a whole,
    and a task that needs two modalities at once (shapes' ``scene``) then does not train.

    A missing modality (mask row all False) is left out: its gate is masked (the others renormalise)
    and its vector is zeroed in the gate input. A row with no modality present fuses to zeros.

    Args (forward):
        outputs: input name -> ``EncoderOutput`` (``pooled [B, D]``, ``mask [B, T]``).
    Returns:
        ``FusionOutput`` with ``fused [B, D]``; with ``per_task``, ``task_vectors`` (one ``[B, D]`` per task)
        and their mean as ``fused``.
    """

    def __init__(self, config: GatedFusionConfig, input_names: list[str], hidden_size: int,
                 task_names: list[str] | None = None) -> None:
        super().__init__()
        self.names = sorted(input_names)
        self.transforms = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in self.names)
        width = len(self.names) * hidden_size
        # per_task: one gate layer per task (state-dict keys gate.TASK.*); else one shared gate (keys gate.*)
        self.tasks = list(task_names or []) if config.per_task else []
        self.gate = nn.ModuleDict({t: nn.Linear(width, width) for t in self.tasks}) if self.tasks else nn.Linear(width, width)

    def forward(self, outputs: dict[str, EncoderOutput]) -> FusionOutput:
        pooled = [outputs[name].pooled for name in self.names]
        present = torch.stack([outputs[name].present for name in self.names], dim=1)  # [B, M]
        hidden = torch.stack([torch.tanh(t(x)) for t, x in zip(self.transforms, pooled)], dim=1)  # [B, M, D]
        # missing inputs are zeroed in the gate's evidence too, so a missing modality has no influence at all
        evidence = torch.cat([x * p.unsqueeze(-1).to(x.dtype) for x, p in zip(pooled, present.unbind(1))], dim=-1)
        if self.tasks:
            vectors = {t: self._mix(self.gate[t](evidence), hidden, present) for t in self.tasks}
            return FusionOutput(torch.stack(list(vectors.values())).mean(dim=0), task_vectors=vectors)
        return FusionOutput(self._mix(self.gate(evidence), hidden, present))

    @staticmethod
    def _mix(logits: Tensor, hidden: Tensor, present: Tensor) -> Tensor:
        logits = logits.view(hidden.shape)  # [B, M, D]
        gates = masked_softmax(logits.transpose(1, 2), present.unsqueeze(1)).transpose(1, 2)  # softmax over M
        return (gates * hidden).sum(dim=1)
