"""Run directories from before the backbone/objectives split (mmcli 0.1, checkpoint format 1) load and
give the metrics they recorded; what cannot be read is refused with one line naming the version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from mmcli.data.synthetic import make_dataset
from mmcli.errors import DataError
from mmcli.model import build_model
from mmcli.recipe.loader import validate_recipe
from mmcli.training.checkpoints import load_training_state, load_weights

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OLD_RUNS = ["v0.1-robust", "v0.1-late"]  # gated per-task + unimodal + corruption gate + fallback; late + unimodal


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes-v0.1")
    make_dataset("shapes", root, size=60, seed=2)  # the data the fixtures were trained on (same bytes)
    return root / "manifest.csv"


def old_run(name: str, tmp_path: Path, manifest: Path) -> Path:
    run_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, run_dir)
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    recipe["data"]["manifest"], recipe["data"]["cache_dir"] = str(manifest), str(tmp_path / "cache")
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return run_dir


@pytest.mark.parametrize("name", OLD_RUNS)
def test_a_run_written_by_mmcli_0_1_evaluates_to_the_metrics_it_recorded(name: str, tmp_path: Path, manifest: Path) -> None:
    from mmcli.workflows.evaluate import evaluate_run

    run_dir = old_run(name, tmp_path, manifest)
    recorded = json.loads((FIXTURES / name / "metrics.json").read_text())["test"]
    result = evaluate_run(run_dir, split="test")
    # "loss" is the model's own validation loss since mmcli 0.3 (0.1 recorded it after the inference
    # wrappers' answers, and float sums differ across CPUs): every task metric and count must be the same
    got, want = dict(result["metrics"]), dict(recorded)
    assert got.pop("loss") == pytest.approx(want.pop("loss"), rel=0.1)
    assert got == want


def test_a_newer_checkpoint_format_is_refused_in_one_line(tmp_path: Path, manifest: Path) -> None:
    run_dir = old_run("v0.1-late", tmp_path, manifest)
    info = run_dir / "checkpoints" / "best" / "model.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "format": 99, "mmcli": "9.0.0"}))
    recipe = validate_recipe(yaml.safe_load((run_dir / "recipe.yaml").read_text()))
    model = build_model(recipe, json.loads((run_dir / "preprocessing.json").read_text()))
    with pytest.raises(DataError, match=r"written by mmcli 9.0.0 \(checkpoint format 99\)") as caught:
        load_weights(run_dir / "checkpoints" / "best", model)
    assert "\n" not in caught.value.one_line()


def test_resuming_a_0_1_checkpoint_is_refused_in_one_line(tmp_path: Path, manifest: Path) -> None:
    run_dir = old_run("v0.1-late", tmp_path, manifest)
    recipe = validate_recipe(yaml.safe_load((run_dir / "recipe.yaml").read_text()))
    model = build_model(recipe, json.loads((run_dir / "preprocessing.json").read_text()))
    with pytest.raises(DataError, match=r"written by mmcli 0.1 \(checkpoint format 1\); this mmcli resumes format 2") as caught:
        load_training_state(run_dir / "checkpoints" / "step-6", model, None, None)
    assert "start a new run" in caught.value.one_line()
