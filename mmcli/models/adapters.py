"""Parameter-efficient training with ``peft``: LoRA adapters injected into named parts of a model (the
language model, a tower); the weights they adapt stop training. ``merged_state`` folds them back into the
weights, as ``merge_and_unload`` does, for an export that needs no ``peft``."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from mmcli.errors import RecipeError
from mmcli.settings import Settings

BASE = ".base_layer."


class AdapterSettings(Settings):
    type: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, description="the rank of each adapter")
    alpha: float = Field(16.0, gt=0, description="scale: the adapter's update is multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="the layers to adapt, by (the end of) their module name, e.g. [q_proj, v_proj]; "
                                  "all-linear: every linear layer but the output layer")
    parts: list[str] = Field(default_factory=lambda: ["lm"], min_length=1,
                             description="where: lm (the language models of text tasks), or inputs' towers by name")


def adapted_modules(model: nn.Module, part: str) -> dict[str, nn.Module]:
    """The modules a part names: ``lm`` -> every text task's language model; an input name -> its tower. A
    decoder that holds a whole model names its own parts (``adaptable_parts()``: part -> {path: module})."""
    found = {f"objectives.{name}.decoder.{path}": module for name, task in model.objectives.items()
             if hasattr(getattr(task, "decoder", None), "adaptable_parts")
             for path, module in task.decoder.adaptable_parts().get(part, {}).items()}
    if found:
        return found
    if part == "lm":
        return {f"objectives.{name}.decoder.lm": task.decoder.lm for name, task in model.objectives.items()
                if hasattr(getattr(task, "decoder", None), "lm")}
    encoders = model.backbone.encoders
    return {f"backbone.encoders.{part}": encoders[part]} if part in encoders else {}


def add_adapters(model: nn.Module, settings: AdapterSettings) -> dict[str, int]:
    """Inject LoRA into every module the settings' parts name; returns module path -> adapter parameters."""
    from peft import LoraConfig, inject_adapter_in_model

    added = {}
    for part in settings.parts:
        modules = adapted_modules(model, part)
        if not modules:
            raise RecipeError(f"training.adapters.parts: this model has no part '{part}' to adapt",
                              hint="lm (a text task with decoder hf_causal_lm or model.type hf_vlm), vision "
                                   "(model.type hf_vlm) or an input's name")
        for path, module in modules.items():
            config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                                target_modules=settings.target_modules, bias="none")
            try:
                inject_adapter_in_model(config, module)
            except ValueError as error:
                linear = sorted({name.rsplit(".", 1)[-1] for name, m in module.named_modules()
                                 if isinstance(m, nn.Linear)})
                raise RecipeError(f"training.adapters.target_modules: {' '.join(str(error).split())[:160]}",
                                  hint=f"the linear layers of {path}: {', '.join(linear[:12])}") from None
            for name, parameter in module.named_parameters():
                parameter.requires_grad_("lora_" in name)
            added[path] = sum(p.numel() for name, p in module.named_parameters() if "lora_" in name)
    return added


@torch.no_grad()
def merged_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state with every LoRA update folded into the weight it adapts and the original names
    back (``q_proj.weight``, not ``q_proj.base_layer.weight``); ``module`` itself is left unmerged."""
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict().items():
        if ".lora_" in name:
            continue
        merged[name.replace(BASE, ".")] = tensor.detach().clone()
    for path, layer in module.named_modules():
        if isinstance(layer, LoraLayer) and layer.active_adapters:
            delta = sum(layer.get_delta_weight(adapter) for adapter in layer.active_adapters if adapter in layer.lora_A)
            key = f"{path}.weight" if path else "weight"
            merged[key] = merged[key] + delta.to(merged[key].dtype)
    return merged


def base_key(name: str) -> str:
    """A weight's name as the unadapted model calls it."""
    return name.replace(BASE, ".")


def lora_keys(state: dict[str, Any]) -> list[str]:
    return [name for name in state if ".lora_" in name]
