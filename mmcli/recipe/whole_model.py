"""``model.type``: the multimodal model (the default: towers, fusion, objectives' heads and decoders), or a
whole pretrained model that reads the inputs itself, a text decoder registered with ``whole_model_reads``
(``hf_vlm``, a vision-language model). ``model: {type: hf_vlm, path: DIR}`` is the decoder's settings at the
top of the recipe; before the recipe validates they are written into every text task (``decoder``, and
``inputs``: the inputs the model reads), and those inputs get the ``raw`` encoder (their tensors go to the
model as they are), so the saved recipe says everything and preprocessing's cache key sees the model.

A recipe with a whole model has text tasks only (one), no other objectives, and only inputs the model
reads; the fusion settings are not for it. One line names the key otherwise."""

from __future__ import annotations

import copy
from typing import Annotated, Any, Callable, Union

from pydantic import ValidationError

from mmcli.registries import DECODERS

MULTIMODAL = "multimodal"
RAW = "raw"
NOT_FOR_WHOLE_MODELS = ("fusion", "fusion_inputs", "attention", "shared_space")


def whole_models() -> dict[str, type]:
    """Model type -> its settings class, for every registered decoder that is a whole model."""
    return {name: config for name, config in zip(DECODERS.names(), DECODERS.configs())
            if getattr(DECODERS.get(name), "whole_model_reads", None)}


def reads(kind: str) -> tuple[str, ...]:
    """The modalities a whole model reads."""
    return tuple(DECODERS.get(kind).whole_model_reads)


def default_model_type(data: Any) -> Any:
    """``model`` without ``type`` is the multimodal model."""
    if isinstance(data, dict) and "type" not in data:
        return {**data, "type": MULTIMODAL}
    return data


def expand(data: Any) -> Any:
    """The recipe data with a whole model's settings written into its text tasks and its inputs' encoders
    (see the module docstring); anything else unchanged. A task or input that already names another
    decoder or encoder is an error."""
    model = data.get("model") if isinstance(data, dict) else None
    kind = model.get("type") if isinstance(model, dict) else None
    if kind not in whole_models():
        return data
    data = copy.deepcopy(data)
    settings = whole_models()[kind]
    decoder = {key: value for key, value in data["model"].items() if key in settings.model_fields}
    try:
        settings(**decoder)  # one line about the model's own settings, before each task repeats it
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(["model", *map(str, first["loc"])])
        raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    read = [name for name, cfg in inputs.items() if isinstance(cfg, dict) and cfg.get("modality") in reads(kind)]
    for name, cfg in inputs.items():
        if name not in read:
            continue
        encoder = cfg.get("encoder")
        if encoder is not None and (not isinstance(encoder, dict) or encoder.get("type") != RAW):
            raise ValueError(f"inputs.{name}.encoder: the {kind} model reads {name} with its own tower "
                             "(model.type); leave the encoder out")
        cfg["encoder"] = {"type": RAW}
    for name, task in (data.get("tasks") or {}).items():
        if not isinstance(task, dict) or task.get("type") != "text":
            continue
        given = task.get("decoder")
        if given is not None and (not isinstance(given, dict) or given.get("type") != kind):
            raise ValueError(f"tasks.{name}.decoder: the {kind} model (model.type) is the decoder; leave it out")
        task["decoder"] = dict(decoder)
        task.setdefault("inputs", read)
    return data


def check(recipe: Any) -> None:
    """What a recipe with a whole model may not have (``ValueError`` naming the key); and the ``raw`` encoder
    only with one."""
    kind = recipe.model.type
    if kind == MULTIMODAL:
        for name, cfg in recipe.inputs.items():
            if cfg.encoder.type == RAW:
                raise ValueError(f"inputs.{name}.encoder: raw hands the input to a whole pretrained model "
                                 f"(model.type: {', '.join(whole_models()) or 'none registered'}); this recipe "
                                 "has none, so give the input an encoder")
        for name, cfg in recipe.tasks.items():
            decoder = getattr(getattr(cfg, "decoder", None), "type", None)
            if decoder in whole_models():
                raise ValueError(f"tasks.{name}.decoder: {decoder} is a whole model that reads the inputs itself; "
                                 f"give it as model: {{type: {decoder}, path: ...}} and leave the decoder out")
        return
    modalities = reads(kind)
    for name, cfg in recipe.inputs.items():
        if cfg.modality not in modalities:
            raise ValueError(f"inputs.{name}: the {kind} model (model.type) reads {' and '.join(modalities)} inputs; "
                             f"{name} ({cfg.modality}) cannot go to it (remove the input)")
    if len(recipe.inputs) > 1:
        raise ValueError(f"inputs: the {kind} model reads one {' or '.join(modalities)} per row; this recipe has "
                         f"{len(recipe.inputs)} inputs ({', '.join(recipe.inputs)})")
    for name, cfg in recipe.tasks.items():
        if cfg.type != "text":
            raise ValueError(f"tasks.{name}: the {kind} model answers in text (type: text); a {cfg.type} task "
                             "needs the multimodal model (leave model.type out)")
    if len(recipe.tasks) > 1:
        raise ValueError(f"tasks: one text task per {kind} model (the model is one, and each task would hold a "
                         f"copy); this recipe has {', '.join(recipe.tasks)} (a conversation column asks several "
                         "questions)")
    if recipe.objectives:
        name = next(iter(recipe.objectives))
        raise ValueError(f"objectives.{name}: the {kind} model trains on its text task only (remove the objective)")
    default = type(recipe).model_fields["model"].get_default(call_default_factory=True)  # the multimodal model's
    for key in NOT_FOR_WHOLE_MODELS:  # compared by value: a saved recipe writes every key, defaults included
        if _plain(getattr(recipe.model, key)) != _plain(getattr(default, key)):
            raise ValueError(f"model.{key}: the {kind} model has no fusion of its own towers (remove the key)")


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def model_union(multimodal: type, fields: Callable[[], dict[str, Any]]) -> Any:
    """The recipe's ``model``: the multimodal model's settings, or a whole model's (its decoder settings with
    the multimodal keys too, at their defaults, so that what reads them reads a whole model's alike),
    chosen by ``type``."""
    from pydantic import BeforeValidator, Field, create_model

    variants = [create_model(f"{config.__name__.removesuffix('Config')}Model", __base__=config, **fields())
                for config in whole_models().values()]
    if not variants:
        return multimodal
    return Annotated[Union[(multimodal, *variants)], Field(discriminator="type"), BeforeValidator(default_model_type)]
