"""A frozen pretrained module is referred to by a checkpoint, not copied into it: tied weights included (a
language model's head shares its embedding, 113 MB for SmolLM2), and the checkpoint loads back whole."""

from __future__ import annotations

from pathlib import Path

import torch

from mmcli.pretrained import mark_pretrained
from mmcli.training.checkpoints import load_weights, save_checkpoint
from safetensors.torch import load_file


class TinyLanguageModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 50, bias=False)
        self.head.weight = self.embed.weight  # tied, as in most causal language models


class Captioner(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tower = torch.nn.Linear(4, 8)
        self.lm = TinyLanguageModel()
        mark_pretrained(self.lm, "models/tiny")
        self.lm.requires_grad_(False)


def test_a_frozen_pretrained_model_with_tied_weights_is_referred_to_not_copied(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Captioner()
    info = save_checkpoint(tmp_path, model, {"epoch": 1})
    saved = load_file(str(info / "model.safetensors"))
    assert set(saved) == {"tower.weight", "tower.bias"}

    torch.manual_seed(1)
    rebuilt = Captioner()
    rebuilt.lm.load_state_dict(model.lm.state_dict())  # the pretrained folder gives the same weights back
    metadata = load_weights(tmp_path, rebuilt)
    assert {"lm.embed.weight", "lm.head.weight"} <= set(metadata["referenced"]["pretrained"])
    assert torch.equal(rebuilt.tower.weight, model.tower.weight)
    assert rebuilt.lm.head.weight is rebuilt.lm.embed.weight
