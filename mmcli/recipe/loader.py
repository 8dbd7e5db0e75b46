"""Load a recipe file (or built-in recipe name), apply overrides, validate, explain errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mmcli.errors import RecipeError
from mmcli.recipe.overrides import apply_overrides
from mmcli.recipe.validation import explain


def builtin_recipes_dir() -> Path:
    """The repository's recipes/ folder when running from a checkout (an editable install), else the
    copy a wheel installs in PREFIX/share/mmcli/recipes."""
    import sys

    checkout = Path(__file__).resolve().parent.parent.parent / "recipes"
    if checkout.is_dir() and (checkout.parent / "pyproject.toml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "mmcli" / "recipes"


def resolve_recipe_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (builtin_recipes_dir() / f"{name_or_path}.yaml", builtin_recipes_dir() / name_or_path):
        if candidate.is_file():
            return candidate
    raise RecipeError(
        f"{name_or_path}: no such recipe file or built-in recipe",
        hint="list built-in recipes with 'mmcli recipes ls'",
    )


def read_recipe_dict(name_or_path: str) -> dict[str, Any]:
    path = resolve_recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise RecipeError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping, got {type(data).__name__}")
    return data


def validate_recipe(data: dict[str, Any]) -> Any:
    """The recipe model of ``data``; a RecipeError naming the first offending key if it does not validate."""
    from mmcli.recipe.schema import recipe_model  # imports every registered component: only when validating

    try:
        return recipe_model().model_validate(data)
    except ValidationError as error:
        raise explain(error, data) from error


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Any:
    """Read, override and validate a recipe. Raises RecipeError with a one-line message."""
    return validate_recipe(apply_overrides(read_recipe_dict(name_or_path), overrides or []))


def recipe_to_yaml(recipe: Any) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
