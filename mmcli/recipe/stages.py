"""A recipe's stages: the pretraining stage is the recipe with its ``pretrain`` section laid over it
(mappings merged key by key, anything else replaced), without the fine-tuning stage's tasks, and with its
own run name."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mmcli.errors import RecipeError
from mmcli.recipe.validation import explain

PRETRAIN_SUFFIX = "-pretrain"


def overlay(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` laid over it: nested mappings merge, other values replace; a ``None``
    value removes the key."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def pretraining_recipe(recipe: Any) -> Any:
    """The recipe ``mmcli pretrain`` trains: the ``pretrain`` section over the recipe, without the tasks,
    expected metrics, sweeps or ``init`` of the fine-tuning stage (the section may bring tasks of its own,
    such as captioning that aligns a projector before instruction tuning), on every train row (unless the
    section sets ``data.train_fraction``), named ``NAME-pretrain``. A recipe without a ``pretrain``
    section but with objectives and no tasks is its own pretraining stage. The stage is validated by
    the recipe's own model (so the schema, which checks a recipe's stage, needs no loader)."""
    if recipe.pretrain is None:
        if recipe.tasks or not recipe.objectives:
            raise RecipeError("pretrain: the recipe has no 'pretrain' section",
                              hint="add one (pretrain: {objectives: {...}}), or give a recipe with objectives and no tasks")
        return recipe
    base = recipe.model_dump(mode="json", exclude={"pretrain", "init", "expected", "sweep"})
    base.update(tasks={}, objectives={}, name=recipe.name + PRETRAIN_SUFFIX)
    base["data"]["train_fraction"] = 1.0
    base["training"].update(monitor=None, freeze_encoders=0)  # the fine-tuning stage's: its tasks, its backbone
    stage = overlay(base, recipe.pretrain)
    try:
        return type(recipe).model_validate(stage)
    except ValidationError as error:
        raise explain(error, stage) from error


def finetuning_recipe(recipe: Any, pretrained_run: str) -> Any:
    """The fine-tuning stage of a two-stage recipe: the recipe initialised from ``pretrained_run`` (an
    absolute path in the saved recipe, so the run can be evaluated from any folder)."""
    return recipe.model_copy(update={"init": recipe.init or str(Path(pretrained_run).resolve())})
