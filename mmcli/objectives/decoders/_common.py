"""What every text decoder shares: its build context, the search settings, and the memory it reads
(each input's tokens and pooled vector, marked with a learned embedding per input)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.settings import Settings

IGNORE = -100  # label positions the loss skips


class GenerationSettings(Settings):
    """How ``predict`` searches for an answer (recipe ``tasks.NAME.generation``, or predict options)."""

    num_beams: int = Field(1, ge=1, description="beam search with this many beams (1: greedy or sampling)")
    max_new_tokens: int | None = Field(None, ge=1, description="longest answer in tokens (default: the task's "
                                                               "max_length without its first token)")
    length_penalty: float = Field(1.0, description="beam search: scores are log-probabilities / length ** this "
                                                   "(0: plain sums, which favour short answers)")
    no_repeat_ngram_size: int = Field(0, ge=0, description="never repeat an n-gram of this size (0: off)")
    do_sample: bool = Field(False, description="sample instead of searching")
    temperature: float = Field(1.0, gt=0, description="sampling: softmax temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="sampling: nucleus (top-p) mass")
    top_k: int = Field(0, ge=0, description="sampling: only the k most likely tokens (0: all)")
    seed: int = Field(0, description="sampling: the seed of the draws (answers are reproducible; the training "
                                     "RNG is left untouched)")

    @model_validator(mode="after")
    def _one_search(self) -> "GenerationSettings":
        if self.do_sample and self.num_beams > 1:
            raise ValueError("do_sample with num_beams > 1: choose sampling or beam search")
        return self

    def transformers_kwargs(self, default_length: int) -> dict[str, Any]:
        """The settings as ``transformers``' ``generate`` keywords."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens or default_length,
                                  "num_beams": self.num_beams, "do_sample": self.do_sample}
        if self.num_beams > 1:
            kwargs.update(length_penalty=self.length_penalty, early_stopping=True)
        if self.no_repeat_ngram_size:
            kwargs["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


@dataclass(frozen=True)
class DecoderContext:
    """``inputs``: the inputs the decoder reads (recipe order); ``hidden_size``: their width;
    ``vocab_size``, ``pad_id``, ``bos_id``, ``eos_id``, ``max_length``: from the fitted target codec
    (``spec``, with ``tokenizer_path`` for a Hugging Face tokenizer); ``name``: the task."""

    name: str
    inputs: tuple[str, ...]
    hidden_size: int
    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    max_length: int
    spec: dict


class InputMemory(nn.Module):
    """The decoder's memory from the representation: for each input, its pooled vector then its tokens,
    plus a learned embedding per input (which input a position comes from), mapped to ``width``.

    ``forward(rep) -> (memory [B, M, width], mask [B, M])``. Every row keeps its inputs' pooled vectors (a
    missing input's is its learned "missing" vector), so no row attends to nothing."""

    def __init__(self, inputs: tuple[str, ...], hidden_size: int, width: int) -> None:
        super().__init__()
        self.inputs = list(inputs)
        self.kind = nn.Parameter(torch.randn(len(self.inputs), hidden_size) * 0.02)
        self.to_width = nn.Identity() if width == hidden_size else nn.Linear(hidden_size, width)

    def forward(self, rep: Any) -> tuple[Tensor, Tensor]:
        parts, masks = [], []
        for index, name in enumerate(self.inputs):
            output = rep.inputs[name]
            pooled = output.pooled.unsqueeze(1)
            parts.append(torch.cat([pooled, output.tokens.to(pooled.dtype)], dim=1) + self.kind[index].to(pooled.dtype))
            masks.append(torch.cat([torch.ones_like(output.mask[:, :1]), output.mask.bool()], dim=1))
        return self.to_width(torch.cat(parts, dim=1)), torch.cat(masks, dim=1)


def shifted(target: Tensor, pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher forcing: ``(input ids [B, L-1], their attention mask, labels [B, L-1])`` from target ids
    ``[B, L]``; labels are the next tokens, ``IGNORE`` on padding."""
    target = target.long()
    inputs, labels = target[:, :-1], target[:, 1:]
    return inputs, inputs != pad_id, labels.masked_fill(labels == pad_id, IGNORE)


def token_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0,
               reduction: Literal["mean", "sum"] = "mean") -> Tensor:
    """Mean (or summed) cross-entropy over the labelled positions of ``logits [B, L, V]``, ``labels [B, L]``;
    0 (still in the graph) when there is none. No host sync."""
    total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE, reduction="sum",
                            label_smoothing=label_smoothing)
    return total if reduction == "sum" else total / (labels != IGNORE).sum().clamp(min=1)


LOGITS_PER_CHUNK = 2**26  # float32 logits computed at once without gradients: 256 MB


def rows_per_forward(rows: int, length: int, vocabulary: int) -> int:
    """How many rows a language model scores in one forward: the whole batch while training (its graph is
    kept anyway), else as many as keep their logits within ``LOGITS_PER_CHUNK`` (a real vocabulary's logits
    over an evaluation batch, 256 rows x 64 tokens x 49k words, would take gigabytes)."""
    return rows if torch.is_grad_enabled() else max(1, LOGITS_PER_CHUNK // max(1, length * vocabulary))


def chunked_token_loss(chunks: Iterable[tuple[Tensor, Tensor]], label_smoothing: float = 0.0) -> Tensor:
    """``token_loss`` over logits and labels that come a few rows at a time."""
    total = count = 0
    for logits, labels in chunks:
        total = total + token_loss(logits, labels, label_smoothing, reduction="sum")
        count = count + (labels != IGNORE).sum()
    return total / count.clamp(min=1)


def token_log_probs(logits: Tensor, labels: Tensor) -> Tensor:
    """``[B]``: the summed log-probabilities of the labelled positions."""
    chosen = logits.float().log_softmax(dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (chosen * (labels != IGNORE)).sum(dim=1)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """``transformers``' own warnings off for a while (they would land in a user's terminal mid-answer)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
