"""A split read in batches from its memory-mapped Arrow files: the same tensors as reading it whole, over
several file chunks, through a subset, with columns set in memory, and with no row at all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Array3D, Dataset, Features, Sequence, Value, concatenate_datasets

from mmcli.data.loader import ShardedBatchSampler, batch_loader, split_tensors, subset_rows


def dataset(rows: int, start: int = 0) -> Dataset:
    generator = np.random.default_rng(start)
    features = Features({"image": Array3D((2, 3, 3), "uint8"), "image_mask": Sequence(Value("bool"), length=1),
                         "image__present": Value("bool"), "text": Sequence(Value("int32"), length=4),
                         "text_mask": Sequence(Value("bool"), length=4), "text__present": Value("bool"),
                         "label": Value("int64"), "score": Value("float64"), "__row__": Value("int64"),
                         "__id__": Value("string"), "__split__": Value("string")})
    return Dataset.from_dict({
        "image": generator.integers(0, 255, (rows, 2, 3, 3)).astype(np.uint8),
        "image_mask": np.ones((rows, 1), dtype=bool), "image__present": generator.random(rows) < 0.7,
        "text": generator.integers(0, 50, (rows, 4)).astype(np.int32), "text_mask": generator.random((rows, 4)) < 0.8,
        "text__present": np.ones(rows, dtype=bool), "label": generator.integers(0, 3, rows),
        "score": generator.random(rows), "__row__": np.arange(start, start + rows),
        "__id__": [str(i) for i in range(rows)], "__split__": ["train"] * rows}, features=features)


def whole(data: Dataset) -> dict[str, torch.Tensor]:
    """The split as one read of every column (what the loader did before it streamed)."""
    table = data.with_format("numpy", dtype=None)[:]
    out = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in table.items()
           if key not in ("__id__", "__split__") and not key.endswith("__present")}
    out["text"] = out["text"].long()
    out["score"] = out["score"].float()
    for name in ("image", "text"):
        present = torch.from_numpy(table[f"{name}__present"])
        out[f"{name}_mask"] = out[f"{name}_mask"] & present.view(-1, *([1] * (out[f"{name}_mask"].dim() - 1)))
    return out


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    folder = tmp_path_factory.mktemp("split")
    concatenate_datasets([dataset(7), dataset(5, start=7)]).save_to_disk(str(folder / "d"))  # two chunks on disk
    from datasets import load_from_disk

    return load_from_disk(str(folder / "d"))


def test_batches_equal_the_whole_split_read_at_once(chunked: Dataset) -> None:
    rows = split_tensors(chunked, ["image", "text"], ["label", "score"])
    expected = whole(chunked)
    assert len(rows) == 12 and sorted(rows.keys()) == sorted(expected)
    index = torch.tensor([11, 0, 6, 7, 3])  # across both chunks, in any order
    batch = rows.batch(index)
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype and torch.equal(batch[key], value[index]), key
        assert torch.equal(rows[key], value), key
    seen = [b["__row__"] for b in batch_loader(rows, ShardedBatchSampler(12, 5, shuffle=False))]
    assert torch.equal(torch.cat(seen), torch.arange(12))


def test_a_subset_a_selected_view_and_columns_in_memory(chunked: Dataset) -> None:
    rows = split_tensors(chunked, ["image", "text"], ["label", "score"])
    rows["image__precomputed"] = torch.arange(12.0).unsqueeze(1)
    part = subset_rows(rows, 0.5, seed=3)
    assert len(part) == 6
    kept = part["__row__"]
    assert torch.equal(part["image"], whole(chunked)["image"][kept])
    assert torch.equal(part["image__precomputed"].squeeze(1), kept.float())  # memory columns follow the rows
    view = split_tensors(chunked.select([4, 1]), ["image", "text"], ["label", "score"])
    assert view["__row__"].tolist() == [4, 1] and torch.equal(view.batch(torch.tensor([1]))["label"],
                                                              whole(chunked)["label"][[1]])


def test_a_split_without_rows_reads_as_empty() -> None:
    empty = split_tensors(dataset(3).select([]), ["image", "text"], ["label", "score"])
    assert len(empty) == 0 and len(empty["__row__"]) == 0
    assert list(batch_loader(empty, ShardedBatchSampler(0, 4, shuffle=False))) == []


def test_rows_decoded_in_memory_are_the_tensors_the_cache_holds(tmp_path) -> None:
    """The single-row path of predict and serve gives what preprocessing wrote, column for column."""
    from mmcli.data.in_memory import decode_in_memory
    from mmcli.data.manifest import read_manifest
    from mmcli.data.preprocess import preprocess
    from mmcli.data.synthetic import make_dataset
    from mmcli.recipe.loader import validate_recipe

    make_dataset("shapes", tmp_path / "shapes", size=40, seed=2)
    recipe = validate_recipe({
        "name": "x", "data": {"manifest": str(tmp_path / "shapes" / "manifest.csv"), "cache_dir": str(tmp_path / "c")},
        "inputs": {"text": {"modality": "text", "column": "text"}, "image": {"modality": "image", "column": "image"},
                   "audio": {"modality": "audio", "column": "audio", "preprocessing": {"duration": 0.5}},
                   "video": {"modality": "video", "column": "video", "optional": True}},
        "tasks": {"shape": {"type": "classification", "column": "shape"}, "size": {"type": "regression", "column": "size"}}})
    prepared = preprocess(recipe)
    cached = split_tensors(prepared.load()["train"], list(recipe.inputs), list(recipe.tasks))
    table = read_manifest(tmp_path / "shapes" / "manifest.csv")
    rows = cached["__row__"][:5]
    part = table.iloc[rows.tolist()].reset_index(drop=True)
    part.loc[1, "video"] = None  # an optional input left out
    decoded = decode_in_memory(recipe, part, tmp_path / "shapes", prepared.preprocessing)
    assert decoded.kept == [0, 1, 2, 3, 4] and not decoded.errors
    for key in cached.keys():
        if key == "__row__":
            continue
        expected = cached[key][:5].clone()
        if key == "video_mask":
            expected[1] = False
        if key == "video":
            continue  # row 1's frames are zeros now; the mask says so
        assert decoded.tensors[key].dtype == expected.dtype and torch.equal(decoded.tensors[key], expected), key


def test_a_cache_opened_without_datasets_reads_as_datasets_reads_it(tmp_path) -> None:
    from datasets import DatasetDict

    from mmcli.data.cached_split import cached_split_names, open_cached_split

    splits = DatasetDict({"train": dataset(9), "test": dataset(6, start=9)})
    splits.save_to_disk(str(tmp_path / "dataset"), num_shards={"train": 3, "test": 2})  # several files a split
    from datasets import load_from_disk

    reference = load_from_disk(str(tmp_path / "dataset"))
    assert sorted(cached_split_names(tmp_path / "dataset")) == ["test", "train"]
    for split in ("train", "test"):
        opened = open_cached_split(tmp_path / "dataset", split)
        assert len(opened) == len(reference[split]) and opened.column_names == reference[split].column_names
        assert opened["__id__"] == list(reference[split]["__id__"])
        ours, theirs = split_tensors(opened, ["image", "text"], ["label", "score"]), whole(reference[split])
        for key, value in theirs.items():
            assert torch.equal(ours[key], value), (split, key)


def test_columns_sliced_at_any_bit_offset_read_their_own_rows() -> None:
    import pyarrow as pa

    from mmcli.data.split_rows import ArrowColumn

    flags = [bool(v) for v in np.random.default_rng(0).random(29) < 0.5]
    numbers = list(range(29))
    for start in (0, 3, 8, 13):
        column = ArrowColumn(pa.chunked_array([pa.array(flags).slice(start, 11), pa.array(flags).slice(start + 11)]))
        assert column.take(np.arange(len(column))).tolist() == flags[start:]
        ints = ArrowColumn(pa.chunked_array([pa.array(numbers, pa.int32()).slice(start)]))
        assert ints.take(np.arange(len(ints))).tolist() == numbers[start:]
