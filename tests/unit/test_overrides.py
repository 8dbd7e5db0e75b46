import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmcli.errors import RecipeError
from mmcli.recipe.overrides import apply_overrides

BASE = {"model": {"fusion": {"type": "concat"}, "hidden_size": 64}, "inputs": {"image": {"column": "image"}, "audio": {}},
        "expected": [{"metric": "accuracy"}, {"metric": "mae"}]}


def test_set_parses_yaml_scalars_and_creates_keys():
    result = apply_overrides(BASE, ["model.hidden_size=128", "model.fusion.type=gated", "training.lr=1e-3", "a.b=[1, 2]"])
    assert result["model"]["hidden_size"] == 128
    assert result["model"]["fusion"]["type"] == "gated"
    assert result["training"]["lr"] == pytest.approx(1e-3)
    assert result["a"]["b"] == [1, 2]
    assert BASE["model"]["hidden_size"] == 64, "the input recipe must not be mutated"


def test_remove_and_list_index():
    result = apply_overrides(BASE, ["~inputs.audio", "expected.1.metric=rmse", "~expected.0"])
    assert list(result["inputs"]) == ["image"]
    assert result["expected"] == [{"metric": "rmse"}]


@pytest.mark.parametrize("override", ["~inputs.video", "expected.5.metric=x", "noequals", "model..x=1", "model.hidden_size.x=1"])
def test_bad_overrides_are_recipe_errors(override):
    with pytest.raises(RecipeError):
        apply_overrides(BASE, [override])


@given(st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6}){0,3}", fullmatch=True), st.integers() | st.text(alphabet="abcxyz", min_size=1))
def test_set_then_read_back(path, value):
    result = apply_overrides({}, [f"{path}={value}"])
    node = result
    for key in path.split("."):
        node = node[key]
    assert str(node) == str(value)
