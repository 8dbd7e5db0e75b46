"""Trainer behaviour on a tiny dataset: non-finite losses, best checkpoint, determinism of the loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmcli.data.preprocess import preprocess
from mmcli.data.synthetic import make_dataset
from mmcli.errors import RecipeError, RuntimeFailure
from mmcli.model import build_model
from mmcli.plugins.robust_fusion.corruption_gate import CorruptionGateSettings
from mmcli.plugins.robust_fusion.missing_fallback import MissingFallbackSettings
from mmcli.recipe.loader import load_recipe
from mmcli.training.seeding import seed_everything
from mmcli.training.run_state import without_timing
from mmcli.training.trainer import train

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    make_dataset("shapes", root, size=40, seed=5)
    recipe = load_recipe(QUICKSTART, [f"data.manifest={root / 'manifest.csv'}", f"data.cache_dir={root / 'cache'}",
                                      "training.epochs=2", "training.batch_size=8", "data.on_error=skip"])
    return recipe, preprocess(recipe)


def poisoned_model(recipe, prepared, every: int):
    """The real model, with the size objective's training loss made NaN on every ``every``-th batch."""
    model = build_model(recipe, prepared.preprocessing)
    size, calls = model.objectives["size"], {"n": 0}
    original = size.loss

    def loss(rep, batch):
        calls["n"] += 1
        value = original(rep, batch)
        return value * float("nan") if calls["n"] % every == 0 else value

    size.loss = loss
    return model, calls


def test_nan_loss_stops_naming_step_and_objective(prepared, tmp_path):
    recipe, data = prepared
    model, calls = poisoned_model(recipe, data, every=3)
    with pytest.raises(RuntimeFailure, match=r"non-finite loss at step 3 \(epoch 1, objective size\)"):
        train(recipe, model, data.load(), tmp_path, show_progress=False)
    assert not list((tmp_path / "checkpoints").glob("step-*")), "nothing is saved after a non-finite loss"


def test_skip_batch_counts_skipped_batches_and_finishes(prepared, tmp_path):
    recipe, data = prepared
    recipe = recipe.model_copy(update={"training": recipe.training.model_copy(update={"on_nan": "skip_batch"})})
    model, _ = poisoned_model(recipe, data, every=3)
    result = train(recipe, model, data.load(), tmp_path, show_progress=False)
    assert result.skipped_batches > 0
    assert result.steps + result.skipped_batches == 2 * (data.splits["train"] // 8)
    assert (tmp_path / "checkpoints" / "best" / "model.safetensors").is_file()


def test_modality_noise_trains_and_needs_the_specs(prepared, tmp_path):
    recipe, data = prepared
    noisy = recipe.model_copy(update={"training": recipe.training.model_copy(update={"modality_noise": 0.5})})
    with pytest.raises(ValueError, match="modality_noise"):
        train(noisy, build_model(noisy, data.preprocessing), data.load(), tmp_path, show_progress=False)
    runs = {}
    for label, config in (("clean", recipe), ("clean-again", recipe), ("noisy", noisy)):
        seed_everything(config.seed)
        runs[label] = train(config, build_model(config, data.preprocessing), data.load(), tmp_path / label,
                            show_progress=False, preprocessing=data.preprocessing)
    clean, result = runs["clean"], runs["noisy"]
    assert without_timing(runs["clean-again"].history) == without_timing(clean.history)
    assert result.steps == clean.steps
    assert result.history[-1]["train_loss"] != clean.history[-1]["train_loss"]  # the noise reached the batches


def test_monitor_loss_keeps_the_epoch_with_the_lowest_weighted_validation_loss(prepared, tmp_path):
    recipe, data = prepared
    recipe = recipe.model_copy(update={"training": recipe.training.model_copy(update={"monitor": "loss", "epochs": 3})})
    seed_everything(recipe.seed)
    result = train(recipe, build_model(recipe, data.preprocessing), data.load(), tmp_path, show_progress=False)
    losses = [record["validation_loss"] for record in result.history]
    assert result.monitor == "validation.loss"
    assert result.best_score == min(losses) and result.best_epoch == losses.index(min(losses)) + 1


def test_corruption_gate_trains_its_detectors_and_needs_the_specs(prepared, tmp_path):
    recipe, data = prepared
    gated = recipe.model_copy(update={"model": recipe.model.model_copy(update={"corruption_gate": CorruptionGateSettings()})})
    with pytest.raises(ValueError, match="corruption_gate"):
        train(gated, build_model(gated, data.preprocessing), data.load(), tmp_path, show_progress=False)
    seed_everything(gated.seed)
    model = build_model(gated, data.preprocessing)
    before = {k: v.clone() for k, v in model.objectives["corruption_gate"].state_dict().items()}
    result = train(gated, model, data.load(), tmp_path / "gated", show_progress=False, preprocessing=data.preprocessing)
    assert result.steps > 0 and all(r["train_loss"] == r["train_loss"] for r in result.history)
    assert all(r["train_losses"]["corruption_gate"] > 0 for r in result.history)  # per objective in the history
    after = model.objectives["corruption_gate"].state_dict()
    assert any(not (after[k] == v).all() for k, v in before.items())  # the detectors learnt


def test_missing_fallback_is_calibrated_on_the_validation_split_after_training(prepared, tmp_path):
    import json

    from mmcli.errors import RecipeError
    from mmcli.training.checkpoints import load_weights

    recipe, data = prepared
    with_fallback = recipe.model_copy(update={"model": recipe.model.model_copy(update={"missing_fallback": MissingFallbackSettings()})})
    no_validation = with_fallback.model_copy(update={"data": with_fallback.data.model_copy(update={"validation_split": None})})
    with pytest.raises(RecipeError, match="missing_fallback"):
        train(no_validation, build_model(no_validation, data.preprocessing), data.load(), tmp_path, show_progress=False)
    seed_everything(with_fallback.seed)
    model = build_model(with_fallback, data.preprocessing)
    result = train(with_fallback, model, data.load(), tmp_path / "run", show_progress=False)
    saved = json.loads((tmp_path / "run" / "missing_fallback.json").read_text())
    assert set(saved["inputs"]) == set(recipe.inputs)
    fallback = model.wrappers["missing_fallback"]
    for name, tasks in saved["inputs"].items():
        assert set(tasks) == set(recipe.tasks)
        for task, decision in tasks.items():
            i, t = fallback.input_names.index(name), fallback.task_names.index(task)
            assert fallback.source_name(int(fallback.source[i, t])) == decision["answers"]
            if decision["answers"] != "model":  # what metrics.json reports
                assert result.extras["missing_fallback"][name][task] == decision["answers"]
    reloaded = build_model(with_fallback, data.preprocessing)
    load_weights(tmp_path / "run" / "checkpoints" / "best", reloaded)  # the best checkpoint holds the decisions
    assert torch.equal(reloaded.wrappers["missing_fallback"].source, fallback.source)
    torch.testing.assert_close(reloaded.wrappers["missing_fallback"].prior("size"), fallback.prior("size"))


def test_drop_last_false_trains_on_the_last_incomplete_batch_and_history_has_timing(prepared, tmp_path):
    recipe, data = prepared
    rows = data.splits["train"]
    batch = 6 if rows % 6 > 1 else 5  # an incomplete last batch of several rows
    kept = recipe.model_copy(update={"training": recipe.training.model_copy(
        update={"drop_last": False, "batch_size": batch, "optimizer": "sgd", "scheduler": "step"})})
    seed_everything(kept.seed)
    result = train(kept, build_model(kept, data.preprocessing), data.load(), tmp_path, show_progress=False)
    assert rows % batch > 1 and result.steps == 2 * -(-rows // batch)
    assert all(record["seconds"] > 0 and record["samples_per_s"] > 0 for record in result.history)

    one_left = recipe.model_copy(update={"training": recipe.training.model_copy(
        update={"drop_last": False, "batch_size": rows - 1})})  # the last batch would be a single row
    with pytest.raises(RecipeError, match="batch of one row"):
        train(one_left, build_model(one_left, data.preprocessing), data.load(), tmp_path / "one", show_progress=False)
