"""The documented Python API: load a recipe, train, evaluate and predict from Python."""

from __future__ import annotations

from pathlib import Path

import pytest

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")


def test_recipe_finetune_evaluate_and_a_predictor_that_loads_once(tmp_path: Path) -> None:
    import mmcli
    from mmcli import Predictor, Recipe, evaluate, finetune
    from mmcli.data.synthetic import make_dataset
    from mmcli.errors import MmcliError

    make_dataset("shapes", tmp_path / "data", size=40, seed=2)
    recipe = Recipe.load(QUICKSTART, [f"data.manifest={tmp_path / 'data' / 'manifest.csv'}",
                                      f"data.cache_dir={tmp_path / 'cache'}", f"output_dir={tmp_path / 'runs'}",
                                      "training.epochs=1", "training.batch_size=8"])
    result = finetune(recipe)
    assert Path(result["run_dir"]).is_dir() and "scene" in result["metrics"]["test"]
    assert evaluate(result["run_dir"], split="test")["metrics"]["scene"] == result["metrics"]["test"]["scene"]
    predictor = Predictor(result["run_dir"])
    model = predictor.run.model
    data = tmp_path / "data"
    answers = predictor.predict([{"image": "images/00000.png", "audio": "audio/00000.wav", "text": "it looks crimson"},
                                 {"text": "mostly navy"},  # the other inputs missing for this row
                                 {"image": "images/nope.png"}], base_dir=data)
    assert set(answers[0]) >= {"scene", "motion", "size"} and set(answers[1]) >= {"scene", "size"}
    assert "error" in answers[2] and "nope.png" in answers[2]["error"]
    assert predictor.predict([{"text": "red"}], base_dir=data)[0]["scene"]["label"]
    assert predictor.run.model is model  # loaded once, answering every call
    with pytest.raises(MmcliError, match="no input 'smell'"):
        predictor.predict([{"smell": "x"}])
    with pytest.raises(AttributeError):
        mmcli.nothing_here  # noqa: B018
