"""The Python API: the CLI's commands as functions, for notebooks and scripts.

    from mmcli import Recipe, finetune, evaluate, Predictor

    recipe = Recipe.load("recipes/quickstart.yaml", ["training.epochs=5"])
    result = finetune(recipe)                       # {"run_dir", "metrics", ...}, as `mmcli finetune --json`
    evaluate(result["run_dir"], split="test")["metrics"]
    Predictor(result["run_dir"]).predict([{"image": "data/shapes/images/00001.png", "text": "it looks crimson"}])

Every function raises ``mmcli.errors.MmcliError`` (one line: ``error.one_line()``) for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcli.workflows.predict import Predictor

__all__ = ["Predictor", "Recipe", "encode", "evaluate", "finetune", "predict", "pretrain", "preprocess", "run"]


class Recipe:
    """Validated recipes (pydantic models of the recipe schema)."""

    @staticmethod
    def load(path_or_name: str | Path, overrides: list[str] | None = None) -> Any:
        """A recipe file or built-in recipe name, with ``key.path=value`` / ``~key.path`` overrides."""
        from mmcli.recipe.loader import load_recipe

        return load_recipe(str(path_or_name), overrides or [])

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Any:
        from mmcli.recipe.loader import validate_recipe

        return validate_recipe(data)


def _recipe(recipe: Any) -> Any:
    return Recipe.load(recipe) if isinstance(recipe, (str, Path)) else recipe


def preprocess(recipe: Any, num_proc: int = 1, force: bool = False) -> dict[str, Any]:
    from mmcli.workflows.preprocess import preprocess as run_preprocess

    return run_preprocess(_recipe(recipe), num_proc=num_proc, force=force)


def finetune(recipe: Any, **options: Any) -> dict[str, Any]:
    """Options as the CLI's: ``run_dir``, ``resume``, ``overwrite``, ``num_proc``, ``show_progress``, and
    ``callbacks`` (training callbacks of your own)."""
    from mmcli.workflows.finetune import finetune as run_finetune

    return run_finetune(_recipe(recipe), **{"show_progress": False, **options})


def pretrain(recipe: Any, **options: Any) -> dict[str, Any]:
    from mmcli.workflows.pretrain import pretrain as run_pretrain

    return run_pretrain(_recipe(recipe), **{"show_progress": False, **options})


def run(recipe: Any, **options: Any) -> dict[str, Any]:
    from mmcli.workflows.run_recipe import run_recipe

    return run_recipe(_recipe(recipe), **{"show_progress": False, **options})


def evaluate(run_dir: str | Path, split: str = "test", **options: Any) -> dict[str, Any]:
    from mmcli.workflows.evaluate import evaluate_run

    return evaluate_run(run_dir, split, **options)


def predict(run_dir: str | Path, **options: Any) -> dict[str, Any]:
    from mmcli.workflows.predict import predict_run

    return predict_run(run_dir, **options)


def encode(run_dir: str | Path, split: str = "test", **options: Any) -> dict[str, Any]:
    from mmcli.workflows.encode import encode_run

    return encode_run(run_dir, split, **options)
