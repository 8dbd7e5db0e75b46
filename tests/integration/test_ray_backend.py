"""Preprocessing on Ray Data writes the cache the local backend writes: the same key, the same tensors."""

from __future__ import annotations

import pytest
import torch

from mmcli.data.loader import split_tensors
from mmcli.data.preprocess import preprocess
from mmcli.data.synthetic import make_dataset
from mmcli.recipe.loader import validate_recipe

pytestmark = pytest.mark.slow  # starts a Ray instance (tens of seconds)


def test_the_ray_backend_writes_the_same_cache_as_the_local_one(tmp_path) -> None:
    ray = pytest.importorskip("ray")
    make_dataset("shapes", tmp_path / "shapes", size=300, seed=4)  # more rows than one chunk: several Ray tasks

    def recipe(cache: str):
        return validate_recipe({
            "name": "x", "data": {"manifest": str(tmp_path / "shapes" / "manifest.csv"), "cache_dir": str(tmp_path / cache)},
            "inputs": {"text": {"modality": "text", "column": "text"}, "image": {"modality": "image", "column": "image"},
                       "audio": {"modality": "audio", "column": "audio", "preprocessing": {"duration": 0.5}},
                       "video": {"modality": "video", "column": "video"}},
            "tasks": {"shape": {"type": "classification", "column": "shape"}}})

    local = preprocess(recipe("local"), num_proc=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # the cluster the test starts
    try:
        distributed = preprocess(recipe("ray"), num_proc=2, backend="ray")
    finally:
        ray.shutdown()
    assert distributed.key == local.key and not distributed.reused
    assert distributed.preprocessing == local.preprocessing and distributed.splits == local.splits
    for split, dataset in local.load().items():
        mine = split_tensors(dataset, ["text", "image", "audio", "video"], ["shape"])
        theirs = split_tensors(distributed.load()[split], ["text", "image", "audio", "video"], ["shape"])
        for key in mine.keys():
            assert torch.equal(mine[key], theirs[key]), (split, key)
