"""Load a recipe file (or built-in recipe name), apply overrides, validate, explain errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mmcli.errors import RecipeError
from mmcli.recipe.overrides import apply_overrides

# Registry kinds named by the key that holds a ``type`` (or ``modality``) tag.
_TAG_KINDS = {"fusion": "fusion", "encoder": "encoder", "attention": "attention", "tasks": "task type",
              "objectives": "objective", "loss_weighting": "loss weighting", "inputs": "modality"}


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


def _user_path(loc: tuple, data: Any) -> list[str]:
    """The error location as recipe keys: pydantic adds union tags (e.g. the chosen fusion
    type) to locations; a part that is not a key of the data at that point is such a tag."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        elif _is_tag(part, node):
            continue
        else:
            node = None
        path.append(str(part))
    return path


def _is_tag(part: Any, node: Any) -> bool:
    return isinstance(node, dict) and part in (node.get("type"), node.get("modality")) or str(part)[:1].isupper() \
        or str(part).startswith("function-")


def _describe(error: dict[str, Any], data: Any) -> str:
    loc = _user_path(error["loc"], data)
    kind = error["type"]
    if kind == "union_tag_invalid":
        ctx = error["ctx"]
        tag = ctx["discriminator"].strip("'")
        holder = next((_TAG_KINDS[p] for p in reversed(loc) if p in _TAG_KINDS), "component")
        known = ", ".join(sorted(t.strip("' ") for t in ctx["expected_tags"].split(",")))
        return f"{'.'.join(loc + [tag])}: unknown {holder} '{ctx['tag']}' (known: {known})"
    if kind == "union_tag_not_found":
        tag = error["ctx"]["discriminator"].strip("'")
        return f"{'.'.join(loc + [tag])}: missing (every entry here needs '{tag}')"
    where = ".".join(loc) or "recipe"
    if kind == "extra_forbidden":
        return f"{where}: unknown key (remove it or check its spelling; 'mmcli recipes schema' lists allowed keys)"
    if kind == "missing":
        return f"{where}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    if kind == "literal_error" and loc and loc[-1] in ("type", "modality"):
        holder = next((_TAG_KINDS[p] for p in reversed(loc[:-1]) if p in _TAG_KINDS), "component")
        known = ", ".join(sorted(e.strip("' ") for e in error["ctx"]["expected"].replace(" or ", ",").split(",") if e.strip()))
        return f"{where}: unknown {holder} {error['input']!r} (known: {known})"
    if kind == "literal_error":
        return f"{where}: {message}, got {error['input']!r}"
    return message if not loc else f"{where}: {message}"


def validate_recipe(data: dict[str, Any]) -> Any:
    from mmcli.recipe.schema import recipe_model

    try:
        return recipe_model().model_validate(data)
    except ValidationError as error:
        errors = error.errors()
        first = _describe(errors[0], data)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise RecipeError(first + more) from error
    except RecipeError:
        raise


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Any:
    """Read, override and validate a recipe. Raises RecipeError with a one-line message."""
    return validate_recipe(apply_overrides(read_recipe_dict(name_or_path), overrides or []))


def recipe_to_yaml(recipe: Any) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
