"""recipes show-model: the model a recipe builds, component by component, with every layer and its
parameter count, without training (the processors are fitted first, as finetune would: vocabulary,
feature sizes and classes decide the shapes)."""

from __future__ import annotations

from typing import Any

from torch import nn


def _count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def _layers(module: nn.Module) -> list[dict[str, Any]]:
    """Leaf layers (``Conv2d(3, 32, ...)``) and parameters a container holds itself (a learned
    "missing" vector), in registration order."""
    rows = []
    for name, child in module.named_modules():
        if not list(child.children()):
            if name:
                rows.append({"name": name, "layer": repr(child), "parameters": _count(child)})
            continue
        for own, parameter in child.named_parameters(recurse=False):
            rows.append({"name": f"{name}.{own}" if name else own, "layer": f"Parameter{tuple(parameter.shape)}",
                         "parameters": parameter.numel()})
    return rows


def describe_model(model: nn.Module) -> dict[str, Any]:
    components = []
    backbone = model.backbone
    groups: list[tuple[str, nn.Module | None]] = [(f"encoders.{name}", encoder) for name, encoder in backbone.encoders.items()]
    groups += [("attention", getattr(backbone, "attention", None)), ("fusion", backbone.fusion),
               ("shared_space", getattr(backbone, "shared", None))]
    groups += [(f"objectives.{name}", objective) for name, objective in model.objectives.items()]
    groups += [("weighting", model.weighting)] + [(f"wrappers.{name}", wrapper) for name, wrapper in model.wrappers.items()]
    for name, module in groups:
        if module is None or not isinstance(module, nn.Module):
            continue
        components.append({"component": name, "type": type(module).__name__, "parameters": _count(module),
                           "layers": _layers(module)})
    total = _count(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"components": components, "parameters": total, "trainable": trainable}


def show_model(recipe: Any, num_proc: int = 1, quiet: bool = True) -> dict[str, Any]:
    from mmcli.data.preprocess import preprocess
    from mmcli.model import build_model
    from mmcli.training.seeding import seed_everything

    prepared = preprocess(recipe, num_proc=num_proc, quiet=quiet)
    seed_everything(recipe.seed)
    model = build_model(recipe, prepared.preprocessing)
    return {"recipe": recipe.name, "hidden_size": recipe.model.hidden_size, **describe_model(model)}
