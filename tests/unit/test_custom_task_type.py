"""A task type defined in this file, with its own target codec, registered without touching mmcli/:
the recipe validates, preprocess encodes its column, it trains, evaluates and predicts end to end."""

from __future__ import annotations

from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from mmcli.data.synthetic import make_dataset
from mmcli.data.synthetic.shapes import size_word
from mmcli.errors import BadValue
from mmcli.objectives._supervised import HeadSettings, HeadTask
from mmcli.recipe.loader import validate_recipe
from mmcli.registries import OBJECTIVES

NAME = "ordinal_for_test"


class OrderedLevels:
    """An ordered scale's names -> 0, 1, 2, ... (float32), NaN without a label; an unknown name is a bad row."""

    dtype = np.float32
    missing = float("nan")

    def __init__(self, levels: list[str]) -> None:
        self.levels = list(levels)

    def fit(self, values: Iterable[Any]) -> "OrderedLevels":
        return self  # the order is declared, nothing to learn

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        out = []
        for value in values:
            if value is None or value == "":
                out.append(np.nan)
            elif value in self.levels:
                out.append(float(self.levels.index(value)))
            else:
                raise BadValue(f"{value!r} is not one of {self.levels}")
        return np.asarray(out, dtype=np.float32)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return ~np.isnan(encoded)

    def spec(self) -> dict[str, Any]:
        return {"levels": self.levels}

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("float32")


class OrdinalConfig(HeadSettings):
    type: Literal[NAME] = NAME  # type: ignore[valid-type]
    levels: list[str] = Field(min_length=2)

    def target_codec(self, spec: dict | None = None) -> OrderedLevels:
        return OrderedLevels(spec["levels"] if spec else self.levels)


@OBJECTIVES.register(NAME, OrdinalConfig)
class OrdinalTask(HeadTask):
    """One value on the scale, squared error; the answer is the nearest level."""

    metrics = {"accuracy": True}
    main_metric = "accuracy"

    def configure(self, config: OrdinalConfig, spec: dict) -> None:
        self.levels = spec["levels"]

    def out_features(self) -> int:
        return 1

    def finish(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.squeeze(-1)

    def prediction_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labelled = ~torch.isnan(target)
        return ((prediction - torch.nan_to_num(target)).square() * labelled).sum() / labelled.sum().clamp(min=1)

    def nearest(self, prediction: torch.Tensor) -> torch.Tensor:
        return prediction.round().clamp(0, len(self.levels) - 1).long()

    def decode(self, prediction: torch.Tensor) -> list[dict[str, Any]]:
        return [{"label": self.levels[i], "value": float(v)} for i, v in zip(self.nearest(prediction).tolist(),
                                                                            prediction.tolist())]

    def metric_inputs(self, prediction: torch.Tensor, target: torch.Tensor) -> tuple[list, list]:
        labelled = ~torch.isnan(target)
        return self.nearest(prediction[labelled]).tolist(), target[labelled].long().tolist()


def recipe(root: Any, epochs: int) -> Any:
    make_dataset("shapes", root / "data", size=96, seed=4)
    table = pd.read_csv(root / "data" / "manifest.csv")
    table["size_word"] = [size_word(size) for size in table["size"]]
    table.to_csv(root / "data" / "sizes.csv", index=False)
    return validate_recipe({
        "name": "sizes", "output_dir": str(root / "runs"), "seed": 0,
        "data": {"manifest": str(root / "data" / "sizes.csv"), "id_column": "id", "cache_dir": str(root / "cache")},
        "inputs": {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 16},
                             "encoder": {"type": "cnn", "channels": [8, 16]}}},
        "tasks": {"size": {"type": NAME, "column": "size_word", "levels": ["small", "medium", "large"]}},
        "model": {"hidden_size": 16},
        "training": {"epochs": epochs, "batch_size": 8, "learning_rate": 3e-3},
    })


def test_a_task_type_defined_in_a_test_trains_evaluates_and_predicts(tmp_path) -> None:
    from mmcli.workflows.finetune import finetune
    from mmcli.workflows.predict import Predictor

    result = finetune(recipe(tmp_path, epochs=4), show_progress=False)
    history = [json_line for json_line in (tmp_path / "runs" / "sizes" / "history.jsonl").read_text().splitlines()]
    import json

    losses = [json.loads(line)["train_loss"] for line in history]
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.8  # it learns
    assert result["metrics"]["test"]["size"]["count"] > 0 and 0 <= result["metrics"]["test"]["size"]["accuracy"] <= 1
    spec = json.loads((tmp_path / "runs" / "sizes" / "preprocessing.json").read_text())["tasks"]["size"]
    assert spec == {"type": NAME, "spec": {"levels": ["small", "medium", "large"]}}
    answer = Predictor(tmp_path / "runs" / "sizes").predict([{"image": str(tmp_path / "data/images/00001.png")}],
                                                            base_dir="/")[0]["size"]
    assert answer["label"] in ("small", "medium", "large")
