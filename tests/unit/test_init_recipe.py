"""recipes init guesses a recipe from a manifest's columns; recipes validate --data checks a recipe against
its manifest without importing torch (issue 23, item 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mmcli.errors import DataError


def _table(rows: int = 40) -> pd.DataFrame:
    words = ["a red circle on grass", "two dogs running", "an empty street at night", "a cup of tea"]
    return pd.DataFrame({
        "id": [f"r{i}" for i in range(rows)],
        "photo": [f"img/{i}.JPG" for i in range(rows)],
        "clip": [f"sounds/{i}.flac" if i % 5 else None for i in range(rows)],  # some rows have no audio
        "movie": [f"clips/{i}.mov" for i in range(rows)],
        "notes": [f"{words[i % 4]} number {i}" for i in range(rows)],
        "split": ["train" if i % 4 else "dev" for i in range(rows)],
        "colour": [["red", "green", "blue"][i % 3] for i in range(rows)],
        "height": [f"{1.5 + i * 0.37:.2f}" for i in range(rows)],
        "stars": [str(i % 5) for i in range(rows)],
    })


def test_columns_become_inputs_a_label_a_task_and_splits_by_their_content():
    from mmcli.workflows.init_recipe import guess_columns

    guesses = {guess.column: (guess.role, guess.kind) for guess in guess_columns(_table())}
    assert guesses == {"id": ("id", ""), "photo": ("input", "image"), "clip": ("input", "audio"),
                       "movie": ("input", "video"), "notes": ("input", "text"), "split": ("split", ""),
                       "colour": ("unused", ""), "height": ("unused", ""), "stars": ("label", "classification")}
    chosen = {guess.column: guess.kind for guess in guess_columns(_table(), label="height") if guess.role == "label"}
    assert chosen == {"height": "regression"}  # numbers of many values
    named = _table().rename(columns={"colour": "Target"})  # a label's name wins over the last column
    assert [g.column for g in guess_columns(named) if g.role == "label"] == ["Target"]
    with pytest.raises(DataError, match="--label: no column 'nope'"):
        guess_columns(_table(), label="nope")
    with pytest.raises(DataError, match="no column holds an input"):
        guess_columns(_table()[["split", "stars"]])


def test_init_writes_a_recipe_that_validates_and_says_its_guesses(tmp_path, monkeypatch):
    from mmcli.recipe.loader import load_recipe
    from mmcli.workflows.init_recipe import init_recipe

    monkeypatch.chdir(tmp_path)
    table = _table().drop(columns=["id", "split", "movie"])
    table.to_csv("my data.csv", index=False)
    result = init_recipe("my data.csv", "recipe.yaml")
    text = Path("recipe.yaml").read_text()
    assert "#   photo: image input (paths ending .jpg)" in text and "#   stars: the classification task" in text
    recipe = load_recipe("recipe.yaml")
    assert recipe.name == "my_data" and recipe.data.id_column is None and "split" not in table.columns
    assert recipe.data.split_ratios == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert recipe.inputs["clip"].optional and not recipe.inputs["photo"].optional
    assert {name: cfg.modality for name, cfg in recipe.inputs.items()} == {"photo": "image", "clip": "audio", "notes": "text"}
    assert recipe.tasks["stars"].type == "classification"
    assert any("sampled image files cannot be used" in warning for warning in result["warnings"])  # no media here
    with pytest.raises(DataError, match="already exists"):
        init_recipe("my data.csv", "recipe.yaml")
    split = _table()
    split.to_csv("split.csv", index=False)
    init_recipe("split.csv", "split.yaml")
    data = yaml.safe_load(Path("split.yaml").read_text())["data"]
    assert (data["split_column"], data["train_split"], data["validation_split"], data["test_split"], data["id_column"]) \
        == ("split", "train", "dev", None, "id")


CHECK = """
import sys
from mmcli.errors import MmcliError
from mmcli.workflows.data_check import check_recipe_data
try:
    print("ok", check_recipe_data(sys.argv[1], sys.argv[2:]))
except MmcliError as error:
    print("error", error.message)
print("heavy:", [m for m in ("torch", "torchaudio", "transformers", "datasets", "pandas") if m in sys.modules])
"""


def _check(recipe: Path, *overrides: str) -> str:
    done = subprocess.run([sys.executable, "-c", CHECK, str(recipe), *overrides], capture_output=True, text=True,
                          cwd=recipe.parent, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("heavy: []"), done.stdout  # nothing heavy imported, pandas included
    return done.stdout


def test_a_recipe_is_checked_against_its_manifest_without_importing_torch(tmp_path):
    (tmp_path / "img").mkdir()
    rows = ["id,photo,caption,label,split"] + [f"r{i},img/{i}.png,a photo {i},{'ab'[i % 2]},{'train' if i else 'test'}"
                                               for i in range(30)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    for i in range(29):  # the last row's file is missing
        (tmp_path / "img" / f"{i}.png").write_bytes(b"not checked: only that it is there")
    recipe = {"name": "x", "data": {"manifest": "m.csv", "id_column": "id"},
              "inputs": {"photo": {"modality": "image", "column": "photo"}, "caption": {"modality": "text", "column": "caption"}},
              "tasks": {"label": {"type": "classification", "column": "label"}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    found = _check(tmp_path / "r.yaml")
    assert found.startswith("error") and "inputs.photo: 1 of 30 sampled image files cannot be used" in found
    assert "row 29: image file not found: img/29.png" in found
    skipped = _check(tmp_path / "r.yaml", "data.on_error=skip")
    assert skipped.startswith("ok") and "1 of 30 sampled image files" in skipped  # a warning: that row is skipped
    found = _check(tmp_path / "r.yaml", "inputs.caption.column=text", "tasks.label.column=y", "data.train_split=training",
                   "data.on_error=skip")
    assert "columns 'text' (inputs.caption.column), 'y' (tasks.label.column) not in the manifest" in found
    assert "no row of split 'training' in column 'split'" in found


TRAIN = """
import atexit, sys
atexit.register(lambda: print("heavy:", [m for m in ("torch", "pandas", "datasets") if m in sys.modules], file=sys.stderr))
from mmcli.cli.app import main
sys.argv = ["mmcli", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("command", ["finetune", "run", "preprocess"])
def test_a_training_names_a_missing_column_before_importing_torch(tmp_path, command):
    """The columns a recipe names are checked against the manifest's header first: the one line
    preprocessing would print, without the seconds of start-up before it."""
    (tmp_path / "m.csv").write_text("id,photo,label,split\n" + "".join(f"r{i},{i}.png,a,train\n" for i in range(4)))
    recipe = {"name": "x", "data": {"manifest": "m.csv", "id_column": "id"},
              "inputs": {"photo": {"modality": "image", "column": "picture"}},
              "tasks": {"label": {"type": "classification", "column": "labels"}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    done = subprocess.run([sys.executable, "-c", TRAIN, command, "r.yaml", "output_dir=runs"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert ("error: m.csv: column 'picture' (from inputs.photo.column) is not in the manifest (and 1 more missing)"
            in done.stderr), done.stderr
    assert "columns are: id, photo, label, split" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("heavy: []") and not (tmp_path / "runs").exists()


def test_the_early_column_check_leaves_what_it_cannot_read_plainly_to_preprocessing(tmp_path):
    from mmcli.workflows.data_check import check_columns_early

    recipe = {"name": "x", "data": {"manifest": "m.tsv"}, "inputs": {"photo": {"modality": "image", "column": "picture"}}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "m.tsv").write_text("photo\tsplit\n1.png\ttrain\n")
    with pytest.raises(DataError, match=r"column 'picture' \(from inputs.photo.column\)"):
        check_columns_early(str(tmp_path / "r.yaml"), [f"data.manifest={tmp_path / 'm.tsv'}"])
    check_columns_early(str(tmp_path / "r.yaml"), [f"data.manifest={tmp_path / 'm.tsv'}", "inputs.photo.column=photo"])
    for manifest in ("absent.csv", "m.jsonl"):  # preprocessing says what is wrong with these
        check_columns_early(str(tmp_path / "r.yaml"), [f"data.manifest={tmp_path / manifest}"])
    recipe["sweep"] = {"inputs.photo.column": ["picture", "photo"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(recipe))
    check_columns_early(str(tmp_path / "s.yaml"), [f"data.manifest={tmp_path / 'm.tsv'}"])
