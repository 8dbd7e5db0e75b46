"""preprocess as a library: cache reuse and invalidation, split handling, label errors, skip accounting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mmcli.data.loader import split_tensors
from mmcli.data.preprocess import preprocess
from mmcli.data.synthetic import make_dataset
from mmcli.errors import DataError
from mmcli.recipe.loader import load_recipe

QUICKSTART = str(Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    make_dataset("shapes", root, size=40, seed=3)
    return root / "manifest.csv"


def recipe_for(manifest: Path, cache: Path, *overrides: str):
    return load_recipe(QUICKSTART, [f"data.manifest={manifest}", f"data.cache_dir={cache}", *overrides])


def test_second_run_reuses_cache_and_a_setting_change_rebuilds(shapes, tmp_path):
    first = preprocess(recipe_for(shapes, tmp_path))
    assert not first.reused and first.kept == 40 and first.skipped == 0
    second = preprocess(recipe_for(shapes, tmp_path))
    assert second.reused and second.key == first.key
    changed = preprocess(recipe_for(shapes, tmp_path, "inputs.audio.preprocessing.n_mels=16"))
    assert not changed.reused and changed.key != first.key
    training_only = preprocess(recipe_for(shapes, tmp_path, "training.epochs=99"))
    assert training_only.reused, "training settings must not invalidate the preprocessing cache"


def test_tensors_have_contract_dtypes_and_shapes(shapes, tmp_path):
    recipe = recipe_for(shapes, tmp_path)
    prepared = preprocess(recipe)
    tensors = split_tensors(prepared.load()["train"], list(recipe.inputs), list(recipe.tasks))
    rows = prepared.splits["train"]
    assert tensors["image"].shape == (rows, 3, 32, 32) and str(tensors["image"].dtype) == "torch.uint8"
    assert tensors["video"].shape == (rows, 8, 3, 16, 16) and tensors["video_mask"].all()
    assert tensors["audio"].shape[:2] == (rows, 32) and str(tensors["audio"].dtype) == "torch.float16"
    assert str(tensors["text"].dtype) == "torch.int64" and tensors["text_mask"].any(dim=1).all()
    assert sorted(prepared.preprocessing["tasks"]["scene"]["spec"]["classes"]) == prepared.preprocessing["tasks"]["scene"]["spec"]["classes"]


def test_split_ratios_when_the_manifest_has_no_split_column(shapes, tmp_path):
    table = pd.read_csv(shapes).drop(columns=["split"])
    manifest = shapes.parent / "nosplit.csv"
    table.to_csv(manifest, index=False)
    prepared = preprocess(recipe_for(manifest, tmp_path, "data.split_ratios={train: 0.5, validation: 0.25, test: 0.25}",
                                     "~tasks.scene", "~tasks.motion", "~expected"))
    assert prepared.splits == {"test": 10, "train": 20, "validation": 10}


def test_label_unseen_in_train_is_a_bad_row_and_skips_are_counted(shapes, tmp_path):
    table = pd.read_csv(shapes)
    row = table.index[table["split"] == "test"][0]
    table.loc[row, "direction"] = "sideways"
    manifest = shapes.parent / "badlabel.csv"
    table.to_csv(manifest, index=False)
    with pytest.raises(DataError, match="sideways"):
        preprocess(recipe_for(manifest, tmp_path))
    prepared = preprocess(recipe_for(manifest, tmp_path, "data.on_error=skip"))
    assert prepared.skipped == 1 and prepared.kept + prepared.skipped == prepared.rows == 40
    assert "sideways" in prepared.errors_file.read_text()


def test_missing_column_names_the_recipe_key(shapes, tmp_path):
    with pytest.raises(DataError, match=r"column 'nope' \(from tasks.scene.column\)"):
        preprocess(recipe_for(shapes, tmp_path, "tasks.scene.column=nope"))


def test_optional_input_with_empty_cells_is_missing_not_an_error(shapes, tmp_path):
    table = pd.read_csv(shapes)
    table.loc[:5, "image"] = ""
    manifest = shapes.parent / "noimage.csv"
    table.to_csv(manifest, index=False)
    with pytest.raises(DataError):
        preprocess(recipe_for(manifest, tmp_path))
    recipe = recipe_for(manifest, tmp_path, "inputs.image.optional=true")
    prepared = preprocess(recipe)
    assert prepared.skipped == 0
    dataset = prepared.load()
    masks = {split: split_tensors(dataset[split], list(recipe.inputs), list(recipe.tasks))["image_mask"] for split in dataset}
    assert sum(int((~m.any(dim=1)).sum()) for m in masks.values()) == 6


def test_a_malformed_jsonl_line_and_bad_utf8_are_named_by_line(tmp_path):
    from mmcli.data.manifest import read_manifest
    from mmcli.errors import DataError

    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(f'{{"id": {i}, "text": "row {i}"}}\n' for i in range(15)) + '{"id": 15, "text": "cut\n'
                     + '{"id": 16}\n')
    with pytest.raises(DataError, match=r"line 16 \(row 15\) is not valid JSON"):
        read_manifest(jsonl)
    csv_file = tmp_path / "rows.csv"
    lines = ["id,text"] + [f"{i},row {i}" for i in range(20)]
    data = "\n".join(lines).encode("utf-8")
    offset = data.index(b"row 14")
    csv_file.write_bytes(data[:offset] + b"\xe9" + data[offset + 1:])  # a Latin-1 byte on line 16
    with pytest.raises(DataError, match=rf"not UTF-8 text: .* at line 16, byte 4 of the line \(offset {offset} in the file\)"):
        read_manifest(csv_file)


def test_warnings_for_an_empty_validation_split_few_rows_and_one_class():
    from types import SimpleNamespace as NS

    from mmcli.data.checks import data_warnings

    recipe = NS(data=NS(validation_split="validation", train_split="train", test_split=None), evaluation=NS(splits=None))
    found = data_warnings(recipe, {"train": 1}, {"tasks": {"scene": {"spec": {"classes": ["a"]}},
                                                           "size": {"spec": {"mean": 0, "std": 1}}}})
    assert len(found) == 3
    assert "split 'validation' has no rows" in found[0] and "has 1 row" in found[1] and "tasks.scene" in found[2]
    assert data_warnings(recipe, {"train": 50, "validation": 5}, {"tasks": {"scene": {"spec": {"classes": ["a", "b"]}}}}) == []
