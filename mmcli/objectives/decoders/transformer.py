"""``transformer``: a small GPT-2 style decoder built from config, cross-attending to the inputs'
tokens (captioning as in "Show, Attend and Tell" with a transformer; the decoder of CoCa/BLIP)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from mmcli.settings import Settings
from mmcli.errors import RecipeError
from mmcli.objectives.decoders._common import (DecoderContext, GenerationSettings, InputMemory, quiet_transformers,
                                               shifted, token_log_probs, token_loss)
from mmcli.registries import DECODERS


class TransformerDecoderConfig(Settings):
    type: Literal["transformer"] = "transformer"
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1, description="attention heads; must divide the width")
    width: int | None = Field(None, ge=8, description="the decoder's width (default: model.hidden_size)")
    dropout: float = Field(0.1, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


@DECODERS.register("transformer", TransformerDecoderConfig)
class TransformerDecoder(nn.Module):
    """``transformers.GPT2LMHeadModel`` with cross-attention (``add_cross_attention``) over the memory
    :class:`InputMemory` builds; token embeddings tied to the output layer. Search (greedy, beams,
    sampling) is ``transformers``' ``generate``."""

    def __init__(self, config: TransformerDecoderConfig, context: DecoderContext, codec: Any = None) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        width = config.width or context.hidden_size
        if width % config.heads:
            raise RecipeError(f"tasks.{context.name}.decoder: heads ({config.heads}) must divide the width ({width})")
        self.context, self.label_smoothing = context, config.label_smoothing
        self.memory = InputMemory(context.inputs, context.hidden_size, width)
        self.lm = GPT2LMHeadModel(GPT2Config(
            vocab_size=context.vocab_size, n_positions=context.max_length, n_embd=width, n_layer=config.layers,
            n_head=config.heads, n_inner=4 * width, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
            attn_pdrop=config.dropout, add_cross_attention=True, bos_token_id=context.bos_id,
            eos_token_id=context.eos_id, pad_token_id=context.pad_id, tie_word_embeddings=True))

    def _logits(self, rep: Any, target: Tensor) -> tuple[Tensor, Tensor]:
        memory, mask = self.memory(rep)
        inputs, attention, labels = shifted(target, self.context.pad_id)
        out = self.lm(input_ids=inputs, attention_mask=attention.long(), encoder_hidden_states=memory,
                      encoder_attention_mask=mask.long(), use_cache=False)
        return out.logits, labels

    def loss(self, rep: Any, batch: dict[str, Tensor], target: Tensor) -> Tensor:
        logits, labels = self._logits(rep, target)
        return token_loss(logits, labels, self.label_smoothing)

    def sequence_log_prob(self, rep: Any, batch: dict[str, Tensor] | None, ids: Tensor) -> Tensor:
        logits, labels = self._logits(rep, ids)
        return token_log_probs(logits, labels)

    def generate(self, rep: Any, batch: dict[str, Tensor] | None, settings: GenerationSettings) -> Tensor:
        memory, mask = self.memory(rep)
        start = torch.full((len(memory), 1), self.context.bos_id, dtype=torch.long, device=memory.device)
        with quiet_transformers():  # finished beams feed padding back without a mask: a warning, never an error
            out = self.lm.generate(input_ids=start, attention_mask=torch.ones_like(start),
                                   encoder_hidden_states=memory, encoder_attention_mask=mask.long(),
                                   pad_token_id=self.context.pad_id, eos_token_id=self.context.eos_id,
                                   bos_token_id=self.context.bos_id,
                                   **settings.transformers_kwargs(self.context.max_length - 1))
        return out[:, 1:]
