"""``key.path=value`` and ``~key.path`` overrides on a recipe dictionary (torchtune/MMF style)."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from mmcli.errors import RecipeError


def _parse_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and text.strip()[:1] not in ("'", '"'):
        # YAML 1.1 reads "1e-3" as a string; users mean a number (unless they quoted it).
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def _step(node: Any, key: str, path: str, create: bool) -> Any:
    if isinstance(node, list):
        if not re.fullmatch(r"-?[0-9]+", key) or not -len(node) <= int(key) < len(node):
            raise RecipeError(f"{path}: no list item '{key}' (the list has {len(node)} items)")
        return node[int(key)]
    if not isinstance(node, dict):
        raise RecipeError(f"{path}: cannot descend into a {type(node).__name__}")
    if key not in node:
        if not create:
            raise RecipeError(f"{path}: no such key", hint=f"known here: {', '.join(map(str, node)) or 'none'}")
        node[key] = {}
    return node[key]


def apply_overrides(recipe: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``recipe`` with each override applied in order.

    ``a.b=1`` sets (creating missing mappings), ``~a.b`` removes. Values are parsed as YAML
    scalars or flow collections (``[1, 2]``, ``{type: cnn}``).
    """
    result = copy.deepcopy(recipe)
    for override in overrides:
        if override.startswith("~"):
            keys = override[1:].split(".")
            value, remove = None, True
        elif "=" in override:
            dotted, raw = override.split("=", 1)
            keys = dotted.split(".")
            value, remove = _parse_value(raw), False
        else:
            raise RecipeError(f"override '{override}' is neither key.path=value nor ~key.path")
        if not all(keys):
            raise RecipeError(f"override '{override}' has an empty key")
        node = result
        for depth, key in enumerate(keys[:-1]):
            node = _step(node, key, ".".join(keys[: depth + 1]), create=not remove)
        last, path = keys[-1], ".".join(keys)
        if isinstance(node, list):
            _step(node, last, path, create=False)
            if remove:
                del node[int(last)]
            else:
                node[int(last)] = value
        elif isinstance(node, dict):
            if remove:
                if last not in node:
                    raise RecipeError(f"{path}: cannot remove, no such key", hint=f"known here: {', '.join(map(str, node))}")
                del node[last]
            else:
                node[last] = value
        else:
            raise RecipeError(f"{'.'.join(keys[:-1])}: cannot set a key inside a {type(node).__name__}")
    return result
