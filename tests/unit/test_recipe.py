from pathlib import Path

import pytest
import yaml

from mmcli.errors import RecipeError
from mmcli.recipe.loader import load_recipe, recipe_to_yaml, validate_recipe
from mmcli.recipe.schema import recipe_model

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")


def error_of(*overrides: str) -> str:
    with pytest.raises(RecipeError) as caught:
        load_recipe(QUICKSTART, list(overrides))
    return caught.value.one_line()


def test_quickstart_is_valid_and_round_trips():
    recipe = load_recipe(QUICKSTART)
    assert list(recipe.inputs) == ["text", "image", "audio", "video"]
    again = validate_recipe(yaml.safe_load(recipe_to_yaml(recipe)))
    assert again.model_dump() == recipe.model_dump()


@pytest.mark.parametrize(("overrides", "expected"), [
    (["model.fusion.type=gatd"], "model.fusion.type: unknown fusion 'gatd' (known: attention, concat, gated"),
    (["inputs.image.encoder.type=vitt"], "inputs.image.encoder.type: unknown encoder 'vitt'"),
    (["model.attention.type=mul"], "model.attention.type: unknown attention 'mul' (known: co_attention, mult, single_stream)"),
    (["inputs.image.modality=smell"], "inputs.image.modality: unknown modality 'smell'"),
    (["tasks.size.type=ranking"], "tasks.size.type: unknown task type 'ranking'"),
    (["training.epochz=3"], "training.epochz: unknown key"),
    (["~data.manifest"], "data.manifest: required key is missing"),
    (["training.epochs=0"], "training.epochs"),
    (["tasks.image.type=regression", "tasks.image.column=size"], "tasks.image: the name is already used by an input"),
    (["expected.0.task=nope"], "expected.0.task: unknown task or objective 'nope'"),
    (["training.monitor=nope.accuracy"], "training.monitor: unknown task or objective 'nope'"),
    (["~tasks"], "tasks: at least one task or objective is needed"),
    (["objectives.x={type: nope}"], "objectives.x"),
    (["training.loss_weighting=magic"], "training.loss_weighting.type: unknown loss weighting 'magic' (known: dwa, static, uncertainty)"),
    (["training.epochs=true"], "training: epochs must be a number, not true"),
    (["model.dropout=false"], "model: dropout must be a number, not false"),
    (["tasks.scene.weight=.inf"], "tasks.scene.weight: Input should be a finite number"),
    (["training.learning_rate=.nan"], "training.learning_rate: Input should be a finite number"),
    (["~inputs.text", "~inputs.image", "~inputs.audio", "~inputs.video"], "inputs: at least one input"),
])
def test_errors_name_the_key_and_the_choices(overrides, expected):
    message = error_of(*overrides)
    assert message.startswith("recipe error: ")
    assert expected in message
    assert "\n" not in message


def test_defaults_fill_in_encoders_and_fusion():
    data = yaml.safe_load(Path(QUICKSTART).read_text())
    del data["model"], data["inputs"]["image"]["encoder"]
    recipe = validate_recipe(data)
    assert recipe.model.fusion.type == "concat"
    assert recipe.inputs["image"].encoder.type == "cnn"


def test_schema_lists_registered_components():
    text = str(recipe_model().model_json_schema())
    for name in ("gated", "attention", "concat", "classification", "regression", "transformer", "frames"):
        assert name in text


def test_not_yaml_or_not_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(str(bad))
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match="must be a YAML mapping"):
        load_recipe(str(bad))


def test_every_shipped_recipe_validates() -> None:
    from mmcli.recipe.loader import builtin_recipes_dir, load_recipe

    paths = sorted(builtin_recipes_dir().glob("*.yaml"))
    assert len(paths) >= 4
    for path in paths:
        load_recipe(str(path))  # raises RecipeError naming the key
