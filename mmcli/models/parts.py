"""A model's parts, named as recipes name them (``training.freeze``, ``training.learning_rates``,
``training.adapters.parts``): each input's tower by its input name and modality (``vision`` for image and
video, ``towers`` for all), ``fusion``, a language model (``lm``), its ``projector`` and ``cross_attention``
layers, ``adapters``, and ``heads`` (everything else a task or objective owns). A whole vision-language
model (decoder ``hf_vlm``) has the same parts: its vision tower (``vision``, ``towers``, the image input's
name), its projector and its language model (``lm``)."""

from __future__ import annotations

from typing import Any

from torch import nn

VISION = ("image", "video")
# The top-level pieces of a whole vision-language model (decoder hf_vlm, held as ``decoder.vlm``), by the
# names the transformers families give them (LLaVA, Idefics3/SmolVLM, Qwen2-VL), and the part each is.
VLM = "vlm"
VLM_PIECES = {"vision_tower": "vision", "vision_model": "vision", "visual": "vision",
              "multi_modal_projector": "projector", "connector": "projector", "merger": "projector",
              "language_model": "lm", "text_model": "lm", "lm_head": "lm"}


def vlm_part(path: list[str]) -> str | None:
    """The part of a vision-language model's parameter or module (its name inside the model, split at the
    dots): the last known piece among the first three (``model.visual.merger`` is the projector)."""
    found = None
    for piece in path[:3]:
        found = VLM_PIECES.get(piece, found)
    return found


def parts_of(name: str, modalities: dict[str, str]) -> set[str]:
    """The parts a parameter (state-dict name) belongs to; ``modalities``: input name -> modality."""
    pieces = name.split(".")
    found: set[str] = set()
    if ".lora_" in name:
        found.add("adapters")
    if pieces[:2] == ["backbone", "encoders"] and len(pieces) > 2:
        modality = modalities.get(pieces[2], "")
        found |= {pieces[2], modality, "towers"} | ({"vision"} if modality in VISION else set())
        return found - {""}
    if pieces[0] == "backbone":
        return found | {"fusion"}
    if len(pieces) > 3 and pieces[0] == "objectives" and pieces[2] == "decoder":
        if pieces[3] == "lm":
            return found | ({"cross_attention"} if ".cross." in name else {"lm"})
        if pieces[3] in ("projectors", "memory"):
            return found | {"projector"}
        if pieces[3] == VLM:
            part = vlm_part(pieces[4:])
            if part == "vision":  # the model's own tower reads the image inputs
                images = {name for name, modality in modalities.items() if modality in VISION}
                return found | {"vision", "towers"} | images | {modalities[name] for name in images}
            return found | ({part} if part else {"heads"})
    return found | {"heads"}


def model_parts(model: nn.Module, modalities: dict[str, str]) -> set[str]:
    """Every part name ``model`` has."""
    return set().union(*(parts_of(name, modalities) for name, _ in model.named_parameters()))


def check_parts(wanted: list[str] | dict[str, Any], model: nn.Module, modalities: dict[str, str], key: str) -> None:
    """``ValueError`` naming ``key`` for a part the model does not have."""
    from mmcli.errors import RecipeError

    known = model_parts(model, modalities)
    for part in wanted:
        if part not in known:
            raise RecipeError(f"{key}: this model has no part '{part}' (its parts: {', '.join(sorted(known))})")


def freeze_parts(model: nn.Module, parts: list[str], modalities: dict[str, str]) -> int:
    """Stop training every parameter of the named parts (adapters inside them still train); returns how
    many parameters were frozen."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if parts_of(name, modalities) & set(parts) and ".lora_" not in name:
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    return frozen
