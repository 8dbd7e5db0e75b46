"""The fusion is built only when an objective reads it (issue 23, item 6): a pretraining model whose
objectives compare the inputs' own embeddings keeps no untrained fusion (no parameters, nothing for
``encode`` to write, nothing for ``show-model`` to count), and runs that saved one still load."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tests.unit.model_fixtures import make_batch, model

PAIR = ["text", "image"]


def _fusion_keys(built) -> list[str]:
    return [key for key in built.state_dict() if key.startswith("backbone.fusion.")]


def test_the_fusion_is_built_only_when_an_objective_reads_it():
    aligned = model("gated", modalities=PAIR, tasks={}, objectives={"align": {"type": "contrastive", "inputs": ["photo", "review"]}})
    assert aligned.backbone.fusion is None and not _fusion_keys(aligned)
    initial = {key: value.clone() for key, value in aligned.backbone.encoders.state_dict().items()}
    batch = make_batch(PAIR)
    total, losses = aligned(batch)
    assert set(losses) == {"align"} and torch.isfinite(total)
    with pytest.raises(ValueError, match="none of its objectives reads the fused vector"):
        aligned.backbone(batch).fused
    masked = model("gated", modalities=PAIR, tasks={}, objectives={"mask": {"type": "masked_text", "input": "review"}})
    assert masked.backbone.fusion is None
    fused_pair = model("gated", modalities=PAIR, tasks={}, objectives={"align": {"type": "contrastive", "inputs": ["photo", "fused"]}})
    assert fused_pair.backbone.fusion is not None and _fusion_keys(fused_pair)
    with_task = model("gated", modalities=PAIR)
    assert with_task.backbone.fusion is not None
    # a part's initial weights do not depend on whether the fusion was built (seeded per component)
    for key, value in initial.items():
        assert torch.equal(value, with_task.backbone.encoders.state_dict()[key]), key


def test_a_checkpoint_that_saved_an_untrained_fusion_still_loads(tmp_path):
    from mmcli.runs import MODEL_INFO, MODEL_WEIGHTS
    from mmcli.training.checkpoints import load_weights

    objectives = {"align": {"type": "contrastive", "inputs": ["photo", "review"]}}
    aligned = model("gated", modalities=PAIR, tasks={}, objectives=objectives)
    older = model("gated", modalities=PAIR, objectives=objectives)  # what older runs built: the fusion too
    saved = {key: value + 1 if value.is_floating_point() else value for key, value in aligned.state_dict().items()}
    state = dict(saved)
    state.update({key: value for key, value in older.state_dict().items() if key.startswith("backbone.fusion.")})
    assert len(state) > len(aligned.state_dict())
    save_file(state, str(tmp_path / MODEL_WEIGHTS))
    (tmp_path / MODEL_INFO).write_text(json.dumps({"format": 2}))
    fresh = model("gated", modalities=PAIR, tasks={}, objectives=objectives)
    load_weights(tmp_path, fresh)
    for key, value in saved.items():
        assert torch.equal(fresh.state_dict()[key], value), key
