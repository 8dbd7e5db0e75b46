"""Masked-token prediction on a text input (BERT's masked language model), conditioned on the other
inputs through the recipe's cross-modal attention block (``model.attention``; ALBEF's MLM): hide a
share of the real tokens behind [MASK], encode the text again, let the attention block mix it with
the other inputs' tokens, and predict each hidden token from its position. Without an attention block
the prediction reads the text alone."""

from __future__ import annotations

import weakref
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings, check_input_modality
from mmcli.objectives.masked_features import hide_draws
from mmcli.registries import OBJECTIVES

WORD_MASK_ID = 4  # "[MASK]" in mmcli's word and wordpiece vocabularies (specs written before mask_id existed)


class MaskedTextConfig(ObjectiveSettings):
    type: Literal["masked_text"] = "masked_text"
    input: str = Field(description="a text input")
    mask_ratio: float = Field(0.15, gt=0, lt=1, description="share of the real tokens hidden")

    def check(self, recipe: Any, name: str) -> None:
        check_input_modality(self.input, recipe, f"objectives.{name}.input", ("text",),
                             " (masked_features for the other modalities)")


@OBJECTIVES.register("masked_text", MaskedTextConfig)
class MaskedText(Objective):
    reads_fusion = False  # one input's own tokens
    """Its validation loss (with a fixed mask) is its measure."""

    def __init__(self, config: MaskedTextConfig, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        spec = context.input_specs[config.input]
        self.input, self.ratio = config.input, config.mask_ratio
        self.mask_id = int(spec.get("mask_id", WORD_MASK_ID))
        self.register_buffer("special", torch.tensor(spec.get("special_ids", list(range(5))), dtype=torch.long))
        self.head = nn.Linear(context.hidden_size, int(spec["vocab_size"]))
        self._model: Any = None

    def attach(self, model: nn.Module) -> None:
        self._model = weakref.ref(model)

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor | None:
        model = self._model()
        ids, mask = batch[self.input], batch[f"{self.input}_mask"].bool()
        maskable = mask & ~torch.isin(ids, self.special)
        hidden = (hide_draws(ids.shape, ids.device, self.training) < self.ratio) & maskable
        if not hidden.any():
            return None
        encoded = dict(rep.encoded)
        encoded[self.input] = model.backbone.encoders[self.input](ids.masked_fill(hidden, self.mask_id), mask)
        tokens = model.backbone.fuse(encoded).inputs[self.input].tokens
        return F.cross_entropy(self.head(tokens[hidden]).float(), ids[hidden].long())
