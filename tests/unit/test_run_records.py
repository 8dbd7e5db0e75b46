"""What a run directory records and says (issue 23, items 2 and 3): --resume refuses a run that is not
there and names every recipe key that changed; a recipe edited after training is noticed once; runs record
absolute paths; a full disk names the file; an empty split that is to be scored is said."""

from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from mmcli.errors import MmcliError, MmcliWarning

REPO = Path(__file__).resolve().parents[2]


def test_resume_refuses_a_run_that_is_not_there_and_continues_one_that_started(tmp_path):
    from mmcli.run_slot import choose_target

    run_dir = tmp_path / "runs" / "typo"
    with pytest.raises(MmcliError, match=r"--resume: .*typo holds no run to continue \(no such folder\)") as raised:
        choose_target(run_dir, resume=True, overwrite=False)
    assert "leave out --resume" in raised.value.one_line()
    run_dir.mkdir(parents=True)
    with pytest.raises(MmcliError, match=r"\(it is empty\)"):
        choose_target(run_dir, resume=True, overwrite=False)
    (run_dir / "recipe.yaml").write_text("name: typo\n")  # stopped before its first checkpoint: it starts again
    assert choose_target(run_dir, resume=True, overwrite=False) == run_dir
    assert choose_target(tmp_path / "runs" / "new", resume=False, overwrite=False) == tmp_path / "runs" / "new"


def test_recipe_differences_name_every_changed_key_with_both_values():
    from mmcli.run_slot import recipe_differences

    saved = {"training": {"learning_rate": 0.001, "epochs": 3, "freeze": []}, "model": {"fusion": {"type": "gated"}}}
    current = {"training": {"learning_rate": 0.002, "epochs": 3, "freeze": ["text"], "ema": 0.9},
               "model": {"fusion": {"type": "concat"}}}
    assert recipe_differences(saved, current) == [
        "training.learning_rate: 0.001 in the run, 0.002 now",
        'training.freeze: [] in the run, ["text"] now',
        "training.ema: not set in the run, 0.9 now",
        'model.fusion.type: "gated" in the run, "concat" now',
    ]


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    from mmcli.cli.state import _environment_line
    from mmcli.runs import append_line, atomic_write_json

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what a write to a full disk raises: no file name

    target = tmp_path / "runs" / "x" / "metrics.json"
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        atomic_write_json(target, {"a": 1})
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(target)
    line = _environment_line(raised.value)
    assert str(target) in line and "No space left on device" in line and "the disk is full" in line
    assert not list(target.parent.iterdir()), "nothing half-written is left"
    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(OSError) as raised:
        append_line(tmp_path / "run.log", "a line")
    assert raised.value.filename == str(tmp_path / "run.log")


def _written_run(tmp_path: Path) -> Path:
    from mmcli.recipe.loader import load_recipe, recipe_to_yaml
    from mmcli.runs import write_recipe

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_recipe(run_dir, recipe_to_yaml(load_recipe(str(REPO / "recipes" / "quickstart.yaml"))))
    return run_dir


def test_a_recipe_edited_after_training_is_noticed(tmp_path):
    from mmcli.workflows.run_dir import run_recipe

    run_dir = _written_run(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MmcliWarning)
        run_recipe(run_dir)  # as training wrote it: nothing to say
    text = (run_dir / "recipe.yaml").read_text()
    assert "\nseed: 0\n" in text
    (run_dir / "recipe.yaml").write_text(text.replace("\nseed: 0\n", "\nseed: 1\n"))
    with pytest.warns(MmcliWarning, match="the run's recipe no longer matches what it was trained with"):
        assert run_recipe(run_dir).seed == 1
    (run_dir / "recipe.sha256").unlink()  # a run written before the hash was kept: nothing to compare with
    with warnings.catch_warnings():
        warnings.simplefilter("error", MmcliWarning)
        run_recipe(run_dir)


def test_the_cli_says_a_warning_raised_during_the_work_once_and_puts_it_in_the_json(capsys):
    from mmcli.cli.state import OutputMode, execute

    said = "runs/x/recipe.yaml: the run's recipe no longer matches what it was trained with"

    def work():
        for _ in range(2):  # opened twice by one command (predict reads the recipe, then opens the run)
            warnings.warn(said, MmcliWarning)
        return {"warnings": ["another"]}

    execute(OutputMode(json=True), work)
    captured = capsys.readouterr()
    assert captured.err.count(said) == 1 and captured.err.count("another") == 1
    assert json.loads(captured.out)["warnings"] == [said, "another"]
    execute(OutputMode(), lambda: (warnings.warn(said, MmcliWarning), {"warnings": [said]})[1])
    assert capsys.readouterr().err.count(said) == 1, "said once, also when the result lists it too"


def test_runs_record_absolute_paths(tmp_path, monkeypatch):
    from mmcli.recipe.loader import load_recipe
    from mmcli.workflows.run_dir import resolved_paths

    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(str(REPO / "recipes" / "quickstart.yaml"), ["init=runs/pre"])
    resolved = resolved_paths(recipe)
    assert resolved.data.manifest == str(tmp_path / "data" / "shapes" / "manifest.csv")
    assert resolved.data.cache_dir == str(tmp_path / ".mmcli-cache")
    assert resolved.init == str(tmp_path / "runs" / "pre")
    assert recipe.data.manifest == "data/shapes/manifest.csv", "the caller's recipe is left as it was"


def test_an_empty_split_that_is_to_be_scored_is_said():
    from mmcli.data.checks import data_warnings

    tasks = {"tasks": {"scene": {"spec": {"classes": ["a", "b"]}}}}
    recipe = NS(data=NS(validation_split="validation", train_split="train", test_split="test"),
                evaluation=NS(splits=["validation", "test", "holdout"]))
    found = data_warnings(recipe, {"train": 50, "validation": 5, "test": 0}, tasks)
    assert [line.split(":")[0] for line in found] == ["evaluation.splits", "evaluation.splits"]
    assert "split 'test' has no rows, so it is not scored" in found[0] and "'holdout'" in found[1]
    recipe.evaluation.splits = None  # the default: the validation and test splits
    assert data_warnings(recipe, {"train": 50, "validation": 5}, tasks)[0].startswith("data.test_split: split 'test'")
    assert data_warnings(recipe, {"train": 50, "validation": 5, "test": 5}, tasks) == []


def test_a_resume_of_a_run_stopped_before_its_first_checkpoint_starts_again_and_says_so(tmp_path):
    from mmcli.recipe.loader import load_recipe
    from mmcli.workflows.finetune import _nothing_to_resume
    from mmcli.workflows.run_dir import resolved_paths

    run_dir = _written_run(tmp_path)  # what a kill before the first checkpoint leaves: the recipe, no checkpoint
    recipe = resolved_paths(load_recipe(str(REPO / "recipes" / "quickstart.yaml")))
    with pytest.warns(MmcliWarning, match="has no checkpoint yet .* training from the start"):
        note = _nothing_to_resume(recipe, run_dir)
    assert note and str(run_dir) in note
    changed = resolved_paths(load_recipe(str(REPO / "recipes" / "quickstart.yaml"), ["training.learning_rate=0.001"]))
    with pytest.raises(MmcliError, match=r"'training' section differs .*training.learning_rate: 0.002 in the run, 0.001 now"):
        _nothing_to_resume(changed, run_dir)  # refused before anything is said
    step = run_dir / "checkpoints" / "step-6"
    step.mkdir(parents=True)
    (step / "trainer_state.json").write_text("{}")
    assert _nothing_to_resume(changed, run_dir) is None  # a checkpoint: the trainer resumes it (and checks the recipe)
