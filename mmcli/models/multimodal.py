"""The multimodal model: one encoder per input, an optional cross-modal attention block, a fusion module,
one head per task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.corruption_gate import CorruptionGate, evaluation_mode
from mmcli.models.late_heads import LateTaskHeads
from mmcli.models.outputs import EncoderOutput
from mmcli.models.missing_fallback import MissingFallback
from mmcli.models.unimodal_heads import UnimodalHeads
from mmcli.registries import ATTENTIONS, ENCODERS, FUSIONS, TASKS


@dataclass
class ModelOutput:
    """``predictions``: task -> head output (e.g. logits ``[B, C]``, values ``[B]``);
    ``encoded``: input -> ``EncoderOutput`` (the encoders' own, after the corruption gate if any, before any
    attention block); ``fused``: ``[B, D]`` (with per-task fusion, the mean of the tasks' fused vectors);
    ``gated``: input -> ``[B]`` bool, rows the corruption gate treated as missing (inference with a gate);
    ``corruption_estimates`` / ``corruption_targets``: input -> ``[N, 2]`` detector estimates and targets
    (loss with the input, gain from dropping it) over clean rows and corrupted copies (training with a
    gate); ``present``: input -> ``[B]`` bool, present before any gate; ``answered_by``: task ->
    ``[B]`` source codes of ``model.missing_fallback`` (-1: the fused model; inference only)."""

    predictions: dict[str, Tensor]
    encoded: dict[str, EncoderOutput]
    fused: Tensor
    gated: dict[str, Tensor] = field(default_factory=dict)
    corruption_estimates: dict[str, Tensor] = field(default_factory=dict)
    corruption_targets: dict[str, Tensor] = field(default_factory=dict)
    present: dict[str, Tensor] = field(default_factory=dict)
    answered_by: dict[str, Tensor] = field(default_factory=dict)


class MultimodalModel(nn.Module):
    """encoders -> [attention block] -> fusion -> dropout -> task heads.

    ``forward(batch)`` reads ``batch[name]`` and ``batch[name + "_mask"]`` for each input; other
    keys (targets, ids, unused columns) are ignored.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module, tasks: dict[str, nn.Module],
                 weights: dict[str, float], dropout: float = 0.1, attention: nn.Module | None = None,
                 unimodal: UnimodalHeads | None = None, unimodal_loss: float = 0.0,
                 corruption_gate: CorruptionGate | None = None,
                 missing_fallback: MissingFallback | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.attention = attention  # None: no parameters, no state-dict keys (older checkpoints load unchanged)
        self.fusion = fusion
        self.dropout = nn.Dropout(dropout)
        self.tasks = nn.ModuleDict(tasks)
        self.weights = dict(weights)
        self.unimodal = unimodal  # None: no state-dict keys, so checkpoints without it load unchanged
        self.unimodal_loss = unimodal_loss
        self.corruption_gate = corruption_gate  # None: no state-dict keys
        self.missing_fallback = missing_fallback  # None: no state-dict keys

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        encoded = {name: encoder(batch[name], batch[f"{name}_mask"]) for name, encoder in self.encoders.items()}
        gate = self.corruption_gate
        present = {name: output.present for name, output in encoded.items()}
        gated: dict[str, Tensor] = {}
        estimates: dict[str, Tensor] = {}
        targets: dict[str, Tensor] = {}
        if gate is not None and self.training:
            estimates, targets = gate.training_estimates(self.encoders, batch, encoded, self._row_losses)
        elif gate is not None:
            encoded, gated = gate.judge(encoded, {name: encoder.missing for name, encoder in self.encoders.items()})
        predictions, fused = self._predict(encoded)
        answered: dict[str, Tensor] = {}
        if self.missing_fallback is not None and not self.training:
            predictions, answered = self.missing_fallback.apply(predictions, encoded, self.unimodal, self.tasks)
        return ModelOutput(predictions=predictions, encoded=encoded, fused=fused, gated=gated,
                           corruption_estimates=estimates, corruption_targets=targets, present=present,
                           answered_by=answered)

    def _predict(self, encoded: dict[str, EncoderOutput]) -> tuple[dict[str, Tensor], Tensor]:
        """Attention block, fusion and heads: ``(predictions, fused)``."""
        attended = encoded if self.attention is None else self.attention(encoded)
        if getattr(self.fusion, "combines_predictions", False):
            vectors, weights = self.fusion.per_modality(attended)  # late fusion: heads per modality
            hidden = self.dropout(vectors)
            predictions = {name: head(hidden, weights) for name, head in self.tasks.items()}
            fused = (vectors * weights.unsqueeze(-1)).sum(dim=1)
        else:
            fused = self.fusion(attended)
            if isinstance(fused, dict):  # a fused vector per task (gated fusion with per_task)
                predictions = {name: head(self.dropout(fused[name])) for name, head in self.tasks.items()}
                fused = torch.stack(list(fused.values())).mean(dim=0)  # one embedding for `encode`
            else:
                hidden = self.dropout(fused)  # one dropout mask shared by the heads
                predictions = {name: head(hidden) for name, head in self.tasks.items()}
        return predictions, fused

    @torch.no_grad()
    def _row_losses(self, encoded: dict[str, EncoderOutput], batch: dict[str, Tensor], rows: Tensor) -> Tensor:
        """``[R]``: the weighted task loss of each row, predicted from ``encoded`` (rows ``rows`` of
        ``batch``) as at inference (evaluation mode, no gradient)."""
        with evaluation_mode(self):
            predictions, _ = self._predict(encoded)
        return sum(self.weights[name] * head.row_loss(predictions[name], batch[name].index_select(0, rows))
                   for name, head in self.tasks.items())

    def compute_loss(self, output: ModelOutput, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``(sum_t weight_t * loss_t, {task: loss_t})``; each task loss skips rows without its label.

        While training, ``model.unimodal_loss`` times the auxiliary unimodal loss is added to the total
        (under ``"unimodal"`` in the dict); evaluation losses are the fused model's alone, so the
        checkpoint monitor compares like with like."""
        losses = {name: head.loss(output.predictions[name], batch[name]) for name, head in self.tasks.items()}
        total = sum(self.weights[name] * loss for name, loss in losses.items())
        if self.unimodal is not None and self.training:
            losses["unimodal"] = self.unimodal.loss(output.encoded, batch, self.weights)
            total = total + self.unimodal_loss * losses["unimodal"]
        detector_loss = self.corruption_gate.loss(output.corruption_estimates, output.corruption_targets) \
            if self.corruption_gate is not None and self.training else None
        if detector_loss is not None:  # the detectors' gradients stop at their own weights
            losses["corruption"] = detector_loss
            total = total + detector_loss
        return total, losses  # type: ignore[return-value]


def _check_name(kind: str, name: str) -> None:
    # module names become state-dict keys; '.' would make them ambiguous (torch refuses them)
    if not name or "." in name:
        raise RecipeError(f"{kind} name '{name}' must be non-empty and contain no '.'")


def build_model(recipe: Any, preprocessing: dict) -> MultimodalModel:
    """Build the model named by a validated recipe, sized by the fitted ``preprocessing`` specs.

    ``preprocessing``: ``{"inputs": {name: {"modality": m, "spec": {...}}}, "tasks": {name: {"type": t, "spec": {...}}}}``.
    """
    hidden = recipe.model.hidden_size
    encoders = {}
    for name, cfg in recipe.inputs.items():
        _check_name("input", name)
        spec = {**preprocessing["inputs"][name]["spec"], "input": name}  # lets encoder errors name the recipe key
        encoders[name] = ENCODERS[cfg.modality].build(cfg.encoder, spec=spec, hidden_size=hidden)
    # heads are built before the fusion: parameter creation order is part of seeded initialisation
    late = getattr(FUSIONS.get(recipe.model.fusion.type), "combines_predictions", False)
    tasks: dict[str, nn.Module] = {}
    for name, cfg in recipe.tasks.items():
        _check_name("task", name)
        spec = preprocessing["tasks"][name]["spec"]
        if late:
            tasks[name] = LateTaskHeads({i: TASKS.build(cfg, spec=spec, hidden_size=hidden) for i in recipe.inputs})
        else:
            tasks[name] = TASKS.build(cfg, spec=spec, hidden_size=hidden)
    per_task = {"task_names": list(recipe.tasks)} if getattr(recipe.model.fusion, "per_task", False) else {}
    fusion = FUSIONS.build(recipe.model.fusion, input_names=list(recipe.inputs), hidden_size=hidden, **per_task)
    attention_config = getattr(recipe.model, "attention", None)  # stand-in recipes may not have the key
    attention = None if attention_config is None else \
        ATTENTIONS.build(attention_config, input_names=list(recipe.inputs), hidden_size=hidden)
    weights = {name: float(cfg.weight) for name, cfg in recipe.tasks.items()}
    unimodal_loss = float(getattr(recipe.model, "unimodal_loss", 0.0))
    unimodal = None
    if unimodal_loss > 0:  # built last: recipes without it keep their seeded initialisation
        unimodal = UnimodalHeads({i: {name: TASKS.build(cfg, spec=preprocessing["tasks"][name]["spec"], hidden_size=hidden)
                                      for name, cfg in recipe.tasks.items()} for i in recipe.inputs})
    gate_config = getattr(recipe.model, "corruption_gate", None)
    gate = None  # built after everything else, for the same reason as the unimodal heads
    if gate_config is not None:
        gate = CorruptionGate(list(recipe.inputs), hidden, rate=gate_config.rate,
                              min_level=gate_config.min_level, margin=gate_config.margin)
    fallback_config = getattr(recipe.model, "missing_fallback", None)
    fallback = None if fallback_config is None else \
        MissingFallback(list(recipe.inputs), tasks, confidence=fallback_config.confidence,
                        complete_rows=fallback_config.complete_rows)  # buffers only
    return MultimodalModel(encoders, fusion, tasks, weights, dropout=recipe.model.dropout, attention=attention,
                           unimodal=unimodal, unimodal_loss=unimodal_loss, corruption_gate=gate,
                           missing_fallback=fallback)
