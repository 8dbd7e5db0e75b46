"""A recipe's validation errors as one line naming the recipe key (what pydantic reports, said in the
recipe's own terms)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mmcli.errors import RecipeError
from mmcli.recipe.whole_model import MULTIMODAL

# Registry kinds named by the key that holds a ``type`` (or ``modality``) tag.
_TAG_KINDS = {"fusion": "fusion", "encoder": "encoder", "attention": "attention", "tasks": "task type",
              "objectives": "objective", "loss_weighting": "loss weighting", "inputs": "modality",
              "model": "model type"}


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
        or str(part).startswith("function-") or (isinstance(node, dict) and part == MULTIMODAL)  # model's default


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


def explain(error: ValidationError, data: Any) -> RecipeError:
    """The first problem of ``error`` (raised validating ``data``), and how many more there are."""
    errors = error.errors()
    first = _describe(errors[0], data)
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return RecipeError(first + more)
