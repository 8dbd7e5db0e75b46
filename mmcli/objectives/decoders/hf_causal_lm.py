"""``hf_causal_lm``: a causal language model behind the towers, LLaVA-style. Each input the task reads has
a projector into the language model's embedding space; its tokens take the place of the input's
placeholder (``<image>``) in a prompt rendered with the tokenizer's chat template, as many as the
projector gives. Or, Flamingo-style (``conditioning: cross_attention``), the prompt keeps no media and
tanh-gated cross-attention layers, closed at initialisation, let the frozen language model look at them.

The language model is a local folder (``path``, loaded with ``from_pretrained``: a downloaded SmolLM,
Qwen, Llama, GPT-2 ...) or built from a ``transformers`` config (``config``, with a tokenizer trained on
the train split's conversations). Search is ``transformers``' ``generate`` on the prompt's embeddings,
left-padded for batches."""

from __future__ import annotations

import io
from contextlib import nullcontext, redirect_stderr
from typing import Any, Iterator, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.objectives.decoders._common import (DecoderContext, GenerationSettings, chunked_token_loss,
                                               quiet_transformers, rows_per_forward, token_log_probs)
from mmcli.objectives.decoders.chat import ANSWER, LAST, PAD, ChatTargets, placeholder
from mmcli.objectives.decoders.cross_attention import CrossAttentionSettings, add_cross_attention
from mmcli.objectives.decoders.projectors import ProjectorSettings, build_projector
from mmcli.registries import DECODERS
from mmcli.settings import Settings

IGNORE = -100


class HFCausalLMConfig(Settings):
    type: Literal["hf_causal_lm"] = "hf_causal_lm"
    path: str | None = Field(None, description="a local model folder (save_pretrained output), or pkg:DIST")
    config: dict[str, Any] | None = Field(None, description="a transformers config to build a language model from "
                                                           "(model_type and sizes; the vocabulary is the tokenizer "
                                                           "trained on the train split), e.g. {model_type: llama, "
                                                           "hidden_size: 64, num_hidden_layers: 2, ...}")
    projector: ProjectorSettings = Field(default_factory=ProjectorSettings)
    conditioning: Literal["placeholders", "cross_attention"] = Field(
        "placeholders", description="placeholders: the inputs' projected tokens in the prompt (LLaVA); "
                                    "cross_attention: gated cross-attention layers in the language model (Flamingo)")
    cross_attention: CrossAttentionSettings = Field(default_factory=CrossAttentionSettings)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    vocabulary_columns: list[str] = Field(default_factory=list, description="with config: train the tokenizer on "
                                          "these columns' train rows (and vocabulary_texts) instead of the task's own "
                                          "column and prompt, e.g. the captions and the conversations of a two-stage "
                                          "recipe, so that both stages share one vocabulary")
    vocabulary_texts: list[str] = Field(default_factory=list, description="with vocabulary_columns: texts the "
                                        "tokenizer also learns (the stages' prompts)")

    @model_validator(mode="after")
    def _one_source(self) -> "HFCausalLMConfig":
        if (self.path is None) == (self.config is None):
            raise ValueError("give the language model as path (a local folder) or config (built from a transformers "
                             "config), one of the two")
        return self


def chat_codec(task: Any, spec: dict | None) -> ChatTargets:
    """The target codec of a text task with this decoder: conversations through the language model's tokenizer."""
    from mmcli.objectives.decoders.lm_tokenizer import from_trained_json, pretrained_tokenizer, trained_tokenizer

    config, placeholders = task.decoder, [placeholder(name) for name in task.inputs or []]
    field = "tasks.<task>.decoder.path"
    if config.path is not None:
        return ChatTargets(task, placeholders, pretrained_tokenizer(config.path, placeholders, field))
    if spec is not None and spec.get("tokenizer_json"):
        return ChatTargets(task, placeholders, from_trained_json(spec["tokenizer_json"], placeholders),
                           train=trained_tokenizer)
    return ChatTargets(task, placeholders, train=lambda texts, marks: trained_tokenizer(texts, marks, task.vocab_size))


@DECODERS.register("hf_causal_lm", HFCausalLMConfig)
class HFCausalLMDecoder(nn.Module):
    """See the module docstring. Batch target: int32 ``[B, 2, L]`` from :class:`ChatTargets`."""

    codec = staticmethod(chat_codec)

    def __init__(self, config: HFCausalLMConfig, context: DecoderContext, codec: ChatTargets) -> None:
        super().__init__()
        self.context, self.settings, self.tokenizer = context, config, codec.tokenizer
        self.lm = load_language_model(config, self.tokenizer, f"tasks.{context.name}.decoder")
        width = int(self.lm.get_input_embeddings().embedding_dim)
        self.inputs = list(context.inputs)
        self.placeholder_ids = [int(self.tokenizer.convert_tokens_to_ids(placeholder(n))) for n in self.inputs]
        self.projectors = nn.ModuleDict({name: build_projector(config.projector, context.hidden_size, width)
                                         for name in self.inputs})
        self.pad_id, self.eos_id = int(self.tokenizer.pad_token_id), int(self.tokenizer.eos_token_id)
        self.media_holder = add_cross_attention(self.lm, width, config.cross_attention) \
            if config.conditioning == "cross_attention" else None

    # ------------------------------------------------------------------------------------- media

    def _media(self, rep: Any) -> list[tuple[Tensor, Tensor]]:
        """Per input: its projected tokens ``[B, N_i, H]`` and their mask (a missing input: all False)."""
        media = []
        for name in self.inputs:
            output = rep.inputs[name]
            tokens, mask = self.projectors[name](output.tokens, output.mask.bool())
            media.append((tokens, mask & output.mask.any(dim=1, keepdim=True)))
        return media

    def _sequence(self, ids: Tensor, real: Tensor, roles: Tensor, media: list[tuple[Tensor, Tensor]]
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(inputs_embeds [B, T, H], attention [B, T], labels [B, T], lengths [B])``, right-padded: each
        placeholder replaced by its input's projected tokens. ``T`` is the same for every batch (the prompt
        length plus every input's tokens), so nothing waits for the host."""
        ids, roles = ids.long(), roles.long()
        embed = self.lm.get_input_embeddings()
        at = [(ids == p) & real for p in self.placeholder_ids] if self.media_holder is None else []
        counts = real.long()
        for here, (features, _) in zip(at, media):
            counts = counts + here.long() * (features.shape[1] - 1)
        if self.media_holder is not None:
            counts = counts * ~self._placeholder_mask(ids)
        total = ids.shape[1] + sum(features.shape[1] - 1 for features, _ in media) if at else ids.shape[1]
        start = counts.cumsum(dim=1) - counts
        text = counts.bool() & ~torch.stack(at, 0).any(0) if at else counts.bool()
        discard = torch.full_like(start, total)
        index = torch.where(text, start, discard)
        b, width = ids.shape[0], embed.embedding_dim
        tokens = embed(ids.masked_fill(~text, self.pad_id))
        out = tokens.new_zeros(b, total + 1, width).scatter(1, index.unsqueeze(-1).expand(-1, -1, width), tokens)
        attention = torch.zeros(b, total + 1, dtype=torch.bool, device=ids.device).scatter(1, index, text)
        wanted = text & ((roles == ANSWER) | (roles == LAST))
        labels = torch.full((b, total + 1), IGNORE, dtype=torch.long, device=ids.device)
        labels = labels.scatter(1, index, torch.where(wanted, ids, IGNORE))
        for here, (features, mask) in zip(at, media):
            first = (start * here).sum(dim=1, keepdim=True)
            positions = first + torch.arange(features.shape[1], device=ids.device)
            positions = torch.where(here.any(dim=1, keepdim=True), positions, total)
            out = out.scatter(1, positions.unsqueeze(-1).expand(-1, -1, width), features.to(out.dtype))
            attention = attention.scatter(1, positions, mask)
        return out[:, :total], attention[:, :total], labels[:, :total], counts.sum(dim=1)

    def _placeholder_mask(self, ids: Tensor) -> Tensor:
        return torch.isin(ids, torch.tensor(self.placeholder_ids, device=ids.device))

    def _set_media(self, media: list[tuple[Tensor, Tensor]], repeat: int = 1) -> None:
        if self.media_holder is not None:
            tokens = torch.cat([features for features, _ in media], dim=1)
            mask = torch.cat([mask for _, mask in media], dim=1)
            self.media_holder.set(tokens.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0))

    # ------------------------------------------------------------------------------------- the contract

    def _logits(self, rep: Any, target: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """The next-token logits and labels, a few rows at a time without gradients."""
        ids, roles = target[:, 0], target[:, 1]
        media = self._media(rep)
        embeds, attention, labels, _ = self._sequence(ids, roles != PAD, roles, media)
        rows = rows_per_forward(len(embeds), embeds.shape[1], self.lm.get_input_embeddings().num_embeddings)
        for start in range(0, len(embeds), rows):
            part = slice(start, start + rows)
            self._set_media([(features[part], mask[part]) for features, mask in media])
            logits = self.lm(inputs_embeds=embeds[part], attention_mask=attention[part].long(), use_cache=False).logits
            yield logits[:, :-1], labels[part, 1:]

    def loss(self, rep: Any, batch: dict[str, Tensor], target: Tensor) -> Tensor:
        return chunked_token_loss(self._logits(rep, target), self.settings.label_smoothing)

    def sequence_log_prob(self, rep: Any, batch: dict[str, Tensor] | None, target: Tensor) -> Tensor:
        return torch.cat([token_log_probs(logits, labels) for logits, labels in self._logits(rep, target)])

    def generate(self, rep: Any, batch: dict[str, Tensor] | None, settings: GenerationSettings,
                 target: Tensor | None = None, streamer: Any = None) -> Tensor:
        """The answer to each row's prompt (its conversation before the last answer), ids ``[B, L']``."""
        ids, roles = target[:, 0], target[:, 1]
        prompt = (roles != PAD) & (roles != LAST)
        media = self._media(rep)
        embeds, attention, _, lengths = self._sequence(ids, prompt, roles, media)
        total = embeds.shape[1]
        # left padding: generation continues every row from its own last prompt token
        shift = (total - lengths).unsqueeze(1)
        source = (torch.arange(total, device=ids.device).unsqueeze(0) - shift) % total
        embeds = embeds.gather(1, source.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
        attention = attention.gather(1, source)
        self._set_media(media, repeat=settings.num_beams)
        with quiet_transformers():
            return self.lm.generate(inputs_embeds=embeds, attention_mask=attention.long(), pad_token_id=self.pad_id,
                                    eos_token_id=self.eos_id, streamer=streamer,
                                    **settings.transformers_kwargs(self.context.max_length))


def load_language_model(config: HFCausalLMConfig, tokenizer: Any, field: str) -> nn.Module:
    """The causal LM of a local folder, or one built from a config sized to the tokenizer; its embeddings
    grow to the tokenizer when placeholders or chat markers were added to it."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    if config.path is not None:
        from mmcli.pretrained import gguf_file, mark_pretrained, resolve_model_path

        folder = resolve_model_path(config.path)
        quantised = gguf_file(folder)  # a llama.cpp file: dequantised to float32 as it loads
        try:
            # transformers' GGUF reader draws its own tqdm bar, which no transformers setting turns off
            with quiet_transformers(), redirect_stderr(io.StringIO()) if quantised else nullcontext():
                lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32,
                                                          **({"gguf_file": quantised} if quantised else {}))
            mark_pretrained(lm, config.path)
        except ImportError as error:  # a GGUF file needs the gguf package; other models their own packages
            raise RecipeError(f"{field}.path: {config.path}: {' '.join(str(error).split())[:160]}",
                              hint="pip install gguf" if quantised else "install the package it names") from None
        except (OSError, ValueError) as error:
            raise RecipeError(f"{field}.path: {config.path} holds no causal language model transformers can load "
                              f"({' '.join(str(error).split())[:160]})",
                              hint="give a folder with a causal LM (LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, ...)") from None
    else:
        settings = dict(config.config or {})
        kind = settings.pop("model_type", None)
        if not kind:
            raise RecipeError(f"{field}.config: name the model_type (e.g. llama, qwen2, gpt2)")
        try:
            lm_config = AutoConfig.for_model(kind, **settings, vocab_size=len(tokenizer),
                                             pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                             eos_token_id=tokenizer.eos_token_id)
            lm = AutoModelForCausalLM.from_config(lm_config)
        except (ValueError, KeyError, TypeError) as error:
            raise RecipeError(f"{field}.config: {' '.join(str(error).split())[:200]}") from None
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return lm
