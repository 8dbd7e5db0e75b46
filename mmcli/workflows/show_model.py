"""recipes show-model: the model a recipe builds, component by component, with every layer and its
parameter count, each encoder's read-out and dropouts, and the optimisation the recipe trains with (its
effective defaults and the parameter groups), without training and without preprocessing the data: the
shapes come from the preprocessing settings (:mod:`mmcli.workflows.model_specs`)."""

from __future__ import annotations

from typing import Any

from torch import nn

# settings that say how an encoder turns its positions into one vector (read-out) and what it drops
READOUT_WORDS = ("pool", "readout", "temporal", "spatial", "fc_layers", "fc_activation", "frame_encoder.type")


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


def encoder_settings(recipe: Any) -> list[dict[str, Any]]:
    """Per input: its encoder's type, read-out (pooling, FC layers, temporal/spatial pooling) and dropouts."""
    rows = []
    for name, cfg in recipe.inputs.items():
        readout: dict[str, Any] = {}
        dropouts: dict[str, Any] = {}
        _walk(cfg.encoder.model_dump(mode="json"), "", readout, dropouts)
        rows.append({"input": name, "modality": cfg.modality, "type": cfg.encoder.type,
                     "shares": getattr(cfg, "share_encoder", None), "readout": readout, "dropouts": dropouts})
    return rows


def _walk(value: Any, path: str, readout: dict[str, Any], dropouts: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _walk(item, f"{path}.{key}" if path else key, readout, dropouts)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            _walk(item, f"{path}.{index}", readout, dropouts)
    elif "dropout" in path.rsplit(".", 1)[-1]:
        dropouts[path] = value
    elif any(word in path for word in READOUT_WORDS) and not path.startswith("blocks.") \
            and not path.endswith("pool_size"):  # a block's own pooling is part of the block, not the read-out
        readout[path] = value


def training_settings(recipe: Any, model: nn.Module) -> dict[str, Any]:
    """The optimisation as it will run: effective values of the defaults, every dropout, parameter groups."""
    cfg = recipe.training
    shown: dict[str, Any] = {"optimizer": cfg.optimizer, "learning_rate": cfg.learning_rate,
                             "weight_decay": cfg.weight_decay, "scheduler": cfg.scheduler,
                             "warmup_ratio": cfg.warmup_ratio, "grad_clip": cfg.grad_clip,
                             "batch_size": cfg.batch_size, "epochs": cfg.epochs}
    if cfg.optimizer == "sgd":
        shown |= {"momentum": cfg.momentum, "nesterov": cfg.nesterov}
    if cfg.learning_rates:
        shown["learning_rates"] = dict(cfg.learning_rates)
    dropouts = {"model.dropout": recipe.model.dropout}
    dropouts |= {f"tasks.{name}.dropout": task.dropout for name, task in recipe.tasks.items() if hasattr(task, "dropout")}
    for row in encoder_settings(recipe):
        dropouts |= {f"inputs.{row['input']}.encoder.{key}": value for key, value in row["dropouts"].items()}
    shown["dropouts"] = dropouts
    shown["parameter_groups"] = _parameter_groups(model, recipe)
    return shown


def _parameter_groups(model: nn.Module, recipe: Any) -> list[dict[str, Any]]:
    """The trainer's own grouping (one learning rate and weight decay each), with what each holds."""
    from mmcli.training.optimization import parameter_groups

    names = {id(parameter): name for name, parameter in model.named_parameters()}
    modalities = {name: cfg.modality for name, cfg in recipe.inputs.items()}
    groups = []
    for group in parameter_groups(model, recipe.training, modalities):
        held = [names[id(parameter)].removeprefix("backbone.") for parameter in group["params"]]
        groups.append({"learning_rate": group["lr"], "weight_decay": group["weight_decay"], "tensors": len(held),
                       "parameters": sum(parameter.numel() for parameter in group["params"]), "examples": held[:3]})
    return groups


def show_model(recipe: Any) -> dict[str, Any]:
    from mmcli.model import build_model
    from mmcli.training.seeding import seed_everything
    from mmcli.workflows.model_specs import configured_specs

    specs, notes = configured_specs(recipe)
    seed_everything(recipe.seed)
    model = build_model(recipe, specs)
    if model.backbone.fusion is None:
        notes.append(f"fusion: not built, no objective reads the fused vector (model.fusion {recipe.model.fusion.type} "
                     "is unused)")
    return {"recipe": recipe.name, "hidden_size": recipe.model.hidden_size, **describe_model(model),
            "encoders": encoder_settings(recipe), "training": training_settings(recipe, model), "notes": notes}
