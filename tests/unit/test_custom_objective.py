"""A new objective is one class and one registration, with no edit under mmcli/: defined here, it
validates in a recipe without any supervised task and trains through the whole finetune workflow."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
import pytest
import torch
from pydantic import Field
from torch.nn import functional as F

from mmcli.data.synthetic import make_dataset
from mmcli.errors import RecipeError
from mmcli.inference.predictor import run_inference
from mmcli.objectives.base import Objective, ObjectiveSettings
from mmcli.recipe.loader import validate_recipe
from mmcli.registries import OBJECTIVES

NAME = "cosine_alignment_test"


class CosineAlignmentConfig(ObjectiveSettings):
    type: Literal["cosine_alignment_test"] = NAME
    inputs: list[str] = Field(min_length=2, max_length=2, description="the two inputs to align")


@OBJECTIVES.register(NAME, CosineAlignmentConfig)
class CosineAlignment(Objective):
    """1 - cosine similarity of two inputs' pooled embeddings, on rows that have both."""

    metrics = {"cosine": True}
    main_metric = "cosine"

    def __init__(self, config: CosineAlignmentConfig, context: Any) -> None:
        super().__init__(context.name, config.weight)
        unknown = [name for name in config.inputs if name not in context.inputs]
        if unknown:
            raise RecipeError(f"objectives.{context.name}.inputs: unknown input '{unknown[0]}'")
        self.first, self.second = config.inputs

    def _pair(self, rep: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, b = rep.encoded[self.first], rep.encoded[self.second]
        return a.pooled, b.pooled, a.present & b.present

    def loss(self, rep: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        a, b, both = self._pair(rep)
        if not both.any():
            return None
        return (1 - F.cosine_similarity(a[both], b[both], dim=-1)).mean()

    def outputs(self, rep: Any) -> dict[str, torch.Tensor]:
        a, b, both = self._pair(rep)
        return {"cosine": F.cosine_similarity(a, b, dim=-1), "both": both.float()}

    def evaluate(self, outputs: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        both = outputs["both"].bool()
        return {"cosine": float(outputs["cosine"][both].mean()), "count": int(both.sum())}


def unlabelled_recipe(root, **training: Any) -> Any:
    """The quickstart's image and audio inputs, no task, only the objective above; a manifest without
    any label column."""
    make_dataset("shapes", root / "data", size=48, seed=3)
    table = pd.read_csv(root / "data" / "manifest.csv")
    table[["id", "split", "image", "audio"]].to_csv(root / "data" / "unlabelled.csv", index=False)
    return validate_recipe({
        "name": "aligned", "output_dir": str(root / "runs"),
        "data": {"manifest": str(root / "data" / "unlabelled.csv"), "id_column": "id",
                 "cache_dir": str(root / "cache")},
        "inputs": {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 16},
                             "encoder": {"type": "cnn", "channels": [8, 16]}},
                   "audio": {"modality": "audio", "column": "audio", "preprocessing": {"duration": 0.5, "n_mels": 16},
                             "encoder": {"type": "cnn", "channels": [16]}}},
        "objectives": {"align": {"type": NAME, "inputs": ["image", "audio"]}},
        "model": {"hidden_size": 16},
        "training": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3, **training},
    })


def test_the_schema_lists_an_objective_registered_after_it_was_built() -> None:
    from mmcli.recipe.schema import recipe_model

    assert NAME in str(recipe_model().model_json_schema())
    with pytest.raises(RecipeError, match="objectives.align.inputs"):
        validate_recipe({"name": "x", "data": {"manifest": "m.csv"},
                         "inputs": {"image": {"modality": "image", "column": "image"}},
                         "objectives": {"align": {"type": NAME, "inputs": ["image"]}}})


def test_a_recipe_without_tasks_trains_with_only_the_new_objective(tmp_path) -> None:
    from mmcli.model import build_model
    from mmcli.workflows.finetune import finetune

    recipe = unlabelled_recipe(tmp_path)
    assert not recipe.tasks and list(recipe.objectives) == ["align"]
    result = finetune(recipe, show_progress=False)
    metrics = result["metrics"]
    assert metrics["training"]["monitor"] == "validation.loss"  # no task: the objectives' validation loss
    history = [line for line in (tmp_path / "runs" / "aligned" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 3
    assert set(metrics["test"]) >= {"align", "loss"} and metrics["test"]["align"]["count"] > 0
    # it learnt: the trained model aligns the two inputs on the test rows better than its initialisation
    from mmcli.data.loader import split_tensors
    from mmcli.data.preprocess import preprocess

    prepared = preprocess(recipe)
    tensors = split_tensors(prepared.load()["test"], list(recipe.inputs), [])
    torch.manual_seed(recipe.seed)
    untrained = build_model(recipe, prepared.preprocessing)
    before = untrained.objectives["align"].evaluate(run_inference(untrained, tensors, 64, torch.device("cpu")).outputs["align"], tensors)
    assert metrics["test"]["align"]["cosine"] > before["cosine"] + 0.1, (before, metrics["test"]["align"])
