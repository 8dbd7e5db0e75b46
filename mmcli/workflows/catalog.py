"""What the project ships: the built-in recipes (ls, cat, cp) and the built-in datasets (ls, make)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcli.errors import MmcliError


def list_recipes() -> list[dict[str, str]]:
    """``[{"name", "path", "description"}]`` of the built-in recipes, by file name."""
    import yaml

    from mmcli.recipe.loader import builtin_recipes_dir

    folder = builtin_recipes_dir()
    rows = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows.append({"name": path.stem, "path": str(path), "description": str(data.get("description", "")).strip()})
    return rows


def recipe_text(name: str) -> dict[str, str]:
    """``{"path", "text"}`` of a recipe file or built-in recipe name."""
    from mmcli.recipe.loader import resolve_recipe_path

    path = resolve_recipe_path(name)
    return {"path": str(path), "text": path.read_text(encoding="utf-8")}


def copy_recipe(name: str, dest: str | Path) -> dict[str, str]:
    """Copy a built-in recipe to ``dest`` (a file, or a folder to copy into); never overwrites."""
    from mmcli.recipe.loader import resolve_recipe_path
    from mmcli.runs import atomic_write_text

    source = resolve_recipe_path(name)
    target = Path(dest)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise MmcliError(f"{target}: already exists", hint="choose another destination or delete it")
    atomic_write_text(target, source.read_text(encoding="utf-8"))
    return {"source": str(source), "dest": str(target)}


def list_datasets() -> list[dict[str, str]]:
    """``[{"name", "description"}]`` of the built-in datasets."""
    from mmcli.data.synthetic import list_datasets as listed

    return listed()


def make_dataset(name: str, directory: str | Path, size: int, seed: int, num_proc: int, force: bool) -> dict[str, Any]:
    """Generate a built-in dataset into ``directory`` (see :func:`mmcli.data.synthetic.make_dataset`)."""
    from mmcli.data.synthetic import make_dataset as make

    return make(name, Path(directory), size=size, seed=seed, num_workers=num_proc, force=force)
