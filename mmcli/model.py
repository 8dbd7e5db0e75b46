"""The trainable model: a backbone, the objectives (supervised tasks first), the loss weighting and
the inference wrappers, assembled from a recipe. Its ``forward`` is the training loss, so that every
parameter with a gradient runs inside the one module a data-parallel wrapper wraps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.backbone import (Backbone, build_attention, build_encoders, build_fusion, build_shared, fused_size,
                                   check_name, fusion_combines_predictions, fusion_inputs, shared_size)
from mmcli.models.adapters import add_adapters
from mmcli.models.seeded import seeded
from mmcli.objectives.base import BuildContext, Objective
from mmcli.registries import LOSS_WEIGHTINGS, OBJECTIVES, active_plugins

CHECKPOINT_FORMAT = 2  # state-dict layout: backbone.*, objectives.*, weighting.*, wrappers.*


class MultimodalModel(nn.Module):
    """``forward(batch) -> (total, {objective: loss})``: the weighted training loss. When no objective had
    anything to learn from the batch, ``losses`` is empty and ``total`` a zero that depends on every
    trainable parameter: a process with nothing to learn still joins the others' gradient reduction.
    Inference goes through :func:`mmcli.inference.predictor.infer_batch`, which also applies the wrappers."""

    def __init__(self, backbone: Backbone, objectives: dict[str, Objective], weighting: nn.Module,
                 wrappers: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.objectives = nn.ModuleDict(objectives)
        self.weighting = weighting
        self.wrappers = nn.ModuleDict(wrappers or {})
        self._task_names = [name for name, objective in objectives.items() if objective.supervised]
        for objective in self.objectives.values():
            objective.attach(self)

    @property
    def tasks(self) -> dict[str, Any]:
        """The supervised objectives, in recipe order."""
        return {name: self.objectives[name] for name in self._task_names}

    @property
    def encoders(self) -> nn.ModuleDict:
        return self.backbone.encoders

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor | None, dict[str, Tensor]]:
        rep = self.backbone(batch)
        losses = {}
        for name, objective in self.objectives.items():
            loss = objective.loss(rep, batch)
            if loss is not None:
                losses[name] = loss
        if not losses:
            return self._zero(), losses
        return self.weighting(losses), losses

    def _zero(self) -> Tensor:
        # built inside forward, so that a data-parallel wrapper sees every parameter used and gets each one's
        # (zero) gradient once
        trainable = [p for p in self.parameters() if p.requires_grad]
        if not trainable:
            return torch.zeros(())
        return torch.stack([p.sum().to(trainable[0].device) for p in trainable]).sum() * 0.0


def build_model(recipe: Any, preprocessing: dict) -> MultimodalModel:
    """Build the model named by a validated recipe, sized by the fitted ``preprocessing`` specs.

    ``preprocessing``: ``{"inputs": {name: {"modality": m, "spec": {...}}}, "tasks": {name: {"type": t, "spec": {...}}}}``.
    """
    hidden = recipe.model.hidden_size
    inputs = {name: cfg.modality for name, cfg in recipe.inputs.items()}
    specs = {name: preprocessing["inputs"][name]["spec"] for name in recipe.inputs}
    late = tuple(fusion_inputs(recipe)) if fusion_combines_predictions(recipe) else ()
    size = shared_size(recipe)
    fused = fused_size(recipe)
    tasks: dict[str, Objective] = {}
    target_specs = {key: entry.get("spec", {}) for key, entry in preprocessing.get("tasks", {}).items()}

    def context(name: str, target_spec: dict | None = None) -> BuildContext:
        return BuildContext(name=name, hidden_size=hidden, inputs=inputs, input_specs=specs, target_spec=target_spec,
                            late_inputs=late, shared_size=size, tasks=dict(tasks), fused_size=fused,
                            target_specs=target_specs)

    # every component draws its initial weights from a generator of its own (models/seeded.py)
    seed = recipe.seed
    encoders = build_encoders(recipe, preprocessing)
    for name, cfg in recipe.tasks.items():
        check_name("task", name)
        with seeded(seed, f"tasks.{name}"):
            tasks[name] = OBJECTIVES.build(cfg, context=context(name, preprocessing["tasks"][name]["spec"]))
    with seeded(seed, "attention"):
        attention = build_attention(recipe)
    with seeded(seed, "shared_space"):
        shared = build_shared(recipe)
    objectives: dict[str, Objective] = dict(tasks)
    for name, cfg in recipe.objectives.items():
        check_name("objective", name)
        with seeded(seed, f"objectives.{name}"):
            objectives[name] = OBJECTIVES.build(cfg, context=context(name))
    plugins = active_plugins()
    for plugin in plugins:
        with seeded(seed, f"plugins.{type(plugin).__name__}"):
            added = plugin.objectives(recipe, context)
        for name, objective in added.items():
            if name in objectives:
                raise RecipeError(f"'{name}' names a task or objective and also one that {type(plugin).__name__} adds",
                                  hint="rename the task or objective")
            objectives[name] = objective
    fusion = None  # built only when an objective reads it: an untrained fusion is neither kept nor encoded
    if any(objective.reads_fusion for objective in objectives.values()):
        with seeded(seed, "fusion"):
            fusion = build_fusion(recipe)
    backbone = Backbone(encoders, fusion, attention, dropout=recipe.model.dropout, shared=shared,
                        fusion_inputs=recipe.model.fusion_inputs)
    with seeded(seed, "weighting"):
        weighting = LOSS_WEIGHTINGS.build(recipe.training.loss_weighting,
                                          weights={name: objective.weight for name, objective in objectives.items()})
    wrappers: dict[str, nn.Module] = {}
    for plugin in plugins:
        with seeded(seed, f"wrappers.{type(plugin).__name__}"):
            wrappers.update(plugin.wrappers(recipe, objectives))
    model = MultimodalModel(backbone, objectives, weighting, wrappers)
    if recipe.training.adapters is not None:
        with seeded(seed, "adapters"):
            add_adapters(model, recipe.training.adapters)
    return model
