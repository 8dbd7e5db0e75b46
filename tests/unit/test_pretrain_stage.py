"""Two stages: the pretraining stage derived from a recipe's 'pretrain' section, fine-tuning initialised
from it (loaded keys reported, mismatched preprocessing refused), frozen encoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmcli.data.synthetic import make_dataset
from mmcli.errors import RecipeError
from mmcli.recipe.loader import validate_recipe
from mmcli.recipe.stages import pretraining_recipe


def two_stage(root: Path, **changes: object) -> dict:
    recipe = {
        "name": "two", "output_dir": str(root / "runs"),
        "data": {"manifest": str(root / "data" / "manifest.csv"), "id_column": "id", "cache_dir": str(root / "cache"),
                 "train_fraction": 0.5},
        "inputs": {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 16},
                             "encoder": {"type": "cnn", "channels": [8]}},
                   "audio": {"modality": "audio", "column": "audio", "preprocessing": {"duration": 0.5, "n_mels": 16},
                             "encoder": {"type": "cnn", "channels": [8]}}},
        "tasks": {"scene": {"type": "classification", "column": "scene"}},
        "model": {"hidden_size": 16, "fusion": {"type": "gated"}},
        "training": {"epochs": 2, "batch_size": 8, "monitor": "scene.accuracy", "freeze_encoders": "always"},
        "expected": [{"task": "scene", "metric": "accuracy", "value": 0.5, "tolerance": 0.5}],
        "pretrain": {
            "inputs": {"caption": {"modality": "text", "column": "caption", "preprocessing": {"max_length": 12},
                                   "encoder": {"type": "transformer", "layers": 1}}},
            "objectives": {"clip": {"type": "contrastive", "inputs": ["image", "caption"], "group_column": "caption"}},
            "model": {"shared_space": {"size": 16}},
            "training": {"epochs": 1},
        },
    }
    for key, value in changes.items():
        recipe[key] = value
    return recipe


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("two-stage")
    make_dataset("shapes", path / "data", size=48, seed=4)
    return path


def test_the_pretraining_stage_is_the_section_over_the_recipe_without_tasks(root: Path) -> None:
    recipe = validate_recipe(two_stage(root))
    stage = pretraining_recipe(recipe)
    assert stage.name == "two-pretrain" and not stage.tasks and list(stage.objectives) == ["clip"]
    assert list(stage.inputs) == ["image", "audio", "caption"] and stage.model.shared_space.size == 16
    assert stage.model.fusion.type == "gated" and stage.training.batch_size == 8 and stage.training.epochs == 1
    assert stage.data.train_fraction == 1.0 and stage.training.freeze_encoders == 0 and stage.training.monitor is None
    assert stage.pretrain is None and not stage.expected and stage.init is None


def test_a_bad_pretraining_section_is_a_recipe_error_naming_it(root: Path) -> None:
    bad = two_stage(root)
    bad["pretrain"]["objectives"]["clip"]["inputs"] = ["image", "sound"]
    with pytest.raises(RecipeError, match=r"pretrain \(the pretraining stage\): objectives.clip.inputs: unknown input 'sound'"):
        validate_recipe(bad)
    with pytest.raises(RecipeError, match="no 'pretrain' section"):
        pretraining_recipe(validate_recipe({**two_stage(root), "pretrain": None}))


@pytest.fixture(scope="module")
def pretrained(root: Path) -> dict:
    from mmcli.workflows.pretrain import pretrain

    return pretrain(validate_recipe(two_stage(root)), show_progress=False)


def test_fine_tuning_starts_from_the_pretrained_backbone(root: Path, pretrained: dict) -> None:
    from mmcli.data.loader import split_tensors
    from mmcli.data.preprocess import preprocess
    from mmcli.model import build_model
    from mmcli.training.initialisation import initialise_from

    recipe = validate_recipe(two_stage(root))
    assert Path(pretrained["run_dir"]).name == "two-pretrain" and "clip" in pretrained["metrics"]["test"]
    prepared = preprocess(recipe)
    batch = split_tensors(prepared.load()["train"], list(recipe.inputs), list(recipe.tasks))

    def first_loss(init: bool) -> tuple[float, dict | None]:
        torch.manual_seed(0)
        model = build_model(recipe, prepared.preprocessing).eval()
        report = initialise_from(model, pretrained["run_dir"], prepared.preprocessing) if init else None
        with torch.no_grad():
            return float(model(batch)[1]["scene"]), report

    scratch, _ = first_loss(False)
    loss, report = first_loss(True)
    assert loss != scratch  # the same random init, then the pretrained encoders
    assert report["loaded"] > 0 and all(key.startswith("backbone.") for key in report["unexpected"])
    assert any(key.startswith("backbone.encoders.caption.") for key in report["unexpected"])  # pretraining's own input
    assert any(key.startswith("backbone.shared.") for key in report["unexpected"])
    assert not [key for key in report["missing"] if key.startswith("backbone.encoders.")]  # every encoder loaded


def test_frozen_encoders_keep_their_initialised_weights(root: Path, pretrained: dict) -> None:
    from safetensors.torch import load_file

    from mmcli.workflows.finetune import finetune

    recipe = validate_recipe(two_stage(root, name="probe", init=pretrained["run_dir"]))

    result = finetune(recipe, show_progress=False)
    assert result["metrics"]["training"]["init"]["loaded"] > 0
    before = load_file(root / "runs" / "two-pretrain" / "checkpoints" / "best" / "model.safetensors")
    after = load_file(root / "runs" / "probe" / "checkpoints" / "best" / "model.safetensors")
    encoders = [key for key in after if key.startswith("backbone.encoders.")]
    assert encoders and all(torch.equal(after[key], before[key]) for key in encoders)  # BatchNorm statistics too
    heads = [key for key in after if key.startswith("objectives.scene.")]
    assert heads


def test_a_mismatched_preprocessing_is_refused_in_one_line(root: Path, pretrained: dict) -> None:
    from mmcli.workflows.finetune import finetune

    changed = two_stage(root, name="other-size", init=pretrained["run_dir"])
    changed["inputs"]["image"]["preprocessing"] = {"size": 24}
    with pytest.raises(RecipeError, match=r"init: input 'image' was preprocessed differently in .*: "
                                          r"inputs.image.preprocessing.size differs \(16 there, 24 here\)") as caught:
        finetune(validate_recipe(changed), show_progress=False)
    assert "\n" not in caught.value.one_line()
