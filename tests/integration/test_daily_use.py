"""Daily use through the real CLI (issue 23): an honest --resume, a run usable from any folder that says
when its recipe was edited."""

from __future__ import annotations

import json
import shutil

from .conftest import run_cli


def _error_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    return errors[0]


def test_resume_refuses_a_run_that_is_not_there_and_names_what_changed(small_workspace, small_run):
    result = run_cli("finetune", "recipes/quickstart.yaml", "name=never-trained", "--resume", cwd=small_workspace)
    assert result.code == 2
    line = _error_line(result)
    assert "runs/never-trained holds no run to continue" in line and "leave out --resume" in line
    assert not (small_workspace / "runs" / "never-trained").exists()
    # the small run trained with the quickstart recipe, epochs=2 and batch_size=16 (tests/integration/conftest.py)
    result = run_cli("finetune", "recipes/quickstart.yaml", "name=small", "training.epochs=2", "training.batch_size=16",
                     "training.learning_rate=0.001", "model.dropout=0.2", "--resume", cwd=small_workspace)
    assert result.code == 2
    line = _error_line(result)
    assert "the recipe's 'model' and 'training' sections differ" in line
    assert "model.dropout: 0.1 in the run, 0.2 now" in line and "training.learning_rate: 0.002 in the run, 0.001 now" in line


def test_a_run_evaluates_from_another_folder_without_its_cache_and_says_its_recipe_was_edited(small_run, tmp_path):
    run = tmp_path / "copied-run"
    shutil.copytree(small_run, run)
    data = json.loads((run / "data.json").read_text())
    data["cache"] = str(tmp_path / "gone")  # the cache was cleared: the manifest is decoded again
    (run / "data.json").write_text(json.dumps(data))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("evaluate", str(run), "--json", cwd=elsewhere)
    assert result.code == 0, result.stderr[-2000:]
    assert "no longer matches" not in result.stderr and not result.json().get("warnings")
    recipe = (run / "recipe.yaml").read_text()
    (run / "recipe.yaml").write_text(recipe.replace("description: ", "description: edited by hand, ", 1))
    result = run_cli("evaluate", str(run), "--json", cwd=elsewhere)
    assert result.code == 0, result.stderr[-2000:]
    said = "the run's recipe no longer matches what it was trained with"
    assert result.stderr.count(said) == 1, result.stderr[-2000:]
    assert [warning for warning in result.json()["warnings"] if said in warning]


def test_init_guesses_a_recipe_for_your_own_csv_that_trains_as_it_is(small_workspace):
    import csv

    shapes = small_workspace / "data" / "shapes"
    with open(shapes / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(shapes / "own.csv", "w", newline="") as handle:  # no split, no id column; other names
        writer = csv.writer(handle)
        writer.writerow(["picture", "sound", "description", "colour", "label"])
        writer.writerows([row["image"], row["audio"], row["caption"], row["color"], row["shape"]] for row in rows)
    result = run_cli("recipes", "init", "--manifest", "data/shapes/own.csv", "-o", "own.yaml", "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    guessed = {column["column"]: (column["role"], column["kind"]) for column in result.json()["columns"]}
    assert guessed == {"picture": ("input", "image"), "sound": ("input", "audio"), "description": ("input", "text"),
                       "colour": ("unused", ""), "label": ("label", "classification")}
    checked = run_cli("recipes", "validate", "own.yaml", "--data", "--json", cwd=small_workspace)
    assert checked.code == 0 and checked.json()["data"]["rows"] == len(rows), checked.stderr[-2000:]
    broken = run_cli("recipes", "validate", "own.yaml", "inputs.picture.column=image", "--data", cwd=small_workspace)
    assert broken.code == 2 and "'image' (inputs.picture.column) not in the manifest" in _error_line(broken)
    trained = run_cli("finetune", "own.yaml", "training.epochs=1", "--json", cwd=small_workspace)
    assert trained.code == 0, trained.stderr[-2000:]
    assert trained.json()["metrics"]["test"]["label"]["count"] > 0
