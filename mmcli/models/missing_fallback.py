"""Missing-input fallback: when an input is missing, each task answers from the source that was
measured to do best without it: the fused model, a single-input head of a remaining input, the
average of the two (a two-member ensemble), or the task's prior (the constant that minimises its
loss on the training labels).

A fused model trained with modality dropout still produces *some* answer for ``size`` when the
only input that knows size is missing, and that answer moves with inputs that know nothing about
size: it has fitted noise on the few training rows where the input was dropped. A single-modality
model of the remaining inputs, which never saw the signal, predicts a near-constant and beats it.
Likewise, with the pitch (audio) missing, ``scene`` is best answered from the shape alone, and the
image's own head (``model.unimodal_loss``) does that better than the fused heads, which were
trained almost always with both. And where the fused model and a remaining input's head are about
equally good, their average is better than either (their errors are far from identical): on
shapes without the video, ``size`` from the fused model and the image's head averaged has a mean
absolute error 5-7% below either, and below a model trained on the image alone.

What each task does without each input is measured, not assumed: after training, on the validation
split with the input removed from every row, per-row losses are compared, paired over rows, at a
one-sided ``confidence``. (1) The fused model keeps answering only if it beats the prior; (2) if it
does, a single-input head of a remaining input replaces it only if that head beats it, and the
average of the two if its mean loss is lower (the rule and why it needs no test:
:func:`mmcli.training.fallback_calibration._best_replacement`). So the prior is the default when
nothing is known, and the fused model when something is. Validation rows, not training rows,
decide: on the training rows the model is fitted and would always look better.

With ``complete_rows`` (the default), rows with every input present get the same treatment with
nothing removed: the fused model, or its average with a single-input head where that is better on
validation (on shapes, ``size`` from the fused model and the image's head averaged: MAE 0.0295 vs
0.0309 for the fused model and 0.0304 for a model trained on the image alone, 5 seeds).

Rows not answered by the fused model are reported (``ModelOutput.answered_by``, ``answered_by`` in
metrics and predictions). Inputs made missing by the corruption gate count as missing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput

MODEL, PRIOR = -1, -2  # sources besides single-input heads (input index i) and blends (inputs + i)


class MissingFallback(nn.Module):
    """Buffers: ``source [inputs, tasks]`` (what answers the task when the input is missing: ``MODEL``,
    ``PRIOR``, the index ``i`` of the input whose single-input head answers, or ``len(inputs) + i`` for
    the average of the fused model and that head), ``when_complete [tasks]`` (the same for rows with every
    input present: ``MODEL``, a head or an average) and ``priors.<task>`` (the
    task's constant prediction). They start as "the model" and "no labels" and are set by
    :func:`mmcli.training.fallback_calibration.calibrate_missing_fallback` after training."""

    def __init__(self, input_names: list[str], tasks: dict[str, nn.Module], confidence: float = 0.95,
                 complete_rows: bool = True) -> None:
        super().__init__()
        self.input_names, self.task_names, self.confidence = list(input_names), list(tasks), confidence
        self.complete_rows = complete_rows
        self.register_buffer("source", torch.full((len(self.input_names), len(self.task_names)), MODEL))
        self.register_buffer("when_complete", torch.full((len(self.task_names),), MODEL))
        self.priors = nn.Module()
        for name, head in tasks.items():
            self.priors.register_buffer(name, head.prior(torch.empty(0)))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints from before complete-row decisions: their complete rows answered from the model
        state_dict.setdefault(prefix + "when_complete", torch.full_like(self.when_complete, MODEL))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def prior(self, task: str) -> Tensor:
        return getattr(self.priors, task)

    def set(self, priors: dict[str, Tensor], sources: dict[tuple[str | None, str], str]) -> None:
        """``sources``: (missing input, task) -> "model", "prior", the name of the answering input's head,
        or "model+<input>" (the average of the fused model and that head); missing input None: the
        decision for rows with every input present."""
        for task, value in priors.items():
            self.prior(task).copy_(value)
        codes = {self.source_name(code): code for code in range(PRIOR, 2 * len(self.input_names))}
        for (name, task), source in sources.items():
            if name is None:
                self.when_complete[self.task_names.index(task)] = codes[source]
            else:
                self.source[self.input_names.index(name), self.task_names.index(task)] = codes[source]

    def source_name(self, code: int) -> str:
        if code in (MODEL, PRIOR):
            return "model" if code == MODEL else "prior"
        inputs = len(self.input_names)
        return self.input_names[code] if code < inputs else f"model+{self.input_names[code - inputs]}"

    def head_input(self, code: int) -> str | None:
        """The input whose single-input head a source uses (None for the fused model and the prior)."""
        return None if code < 0 else self.input_names[code % len(self.input_names)]

    def apply(self, predictions: dict[str, Tensor], encoded: dict[str, EncoderOutput],
              unimodal: nn.Module | None, heads: nn.ModuleDict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(predictions, answered_by)``, ``answered_by``: task -> ``[B]`` source codes. For a row missing
        input ``i``, task ``t`` answers from ``source[i, t]``; with several inputs missing the prior wins
        (one of them is one the task cannot do without), then the first single-input head (alone or
        averaged with the fused model) whose input is present; otherwise the fused model. A row with every
        input present answers from ``when_complete``."""
        present = {name: output.present for name, output in encoded.items()}
        complete = torch.stack(list(present.values())).all(dim=0)
        out, answered = dict(predictions), {}
        for j, task in enumerate(self.task_names):
            code = torch.full_like(present[self.input_names[0]], MODEL, dtype=torch.long)
            for i, name in enumerate(self.input_names):
                source = int(self.source[i, j])
                if source == MODEL:
                    continue
                rows = ~present[name]
                if source != PRIOR:
                    rows = rows & present[self.head_input(source)] & (code == MODEL)
                code = torch.where(rows, torch.full_like(code, source), code)
            code = torch.where(complete, self.when_complete[j].to(code), code)
            answered[task] = code
            if not (code != MODEL).any():
                continue
            value = out[task].clone()
            for source in code.unique().tolist():
                rows = code == source
                if source == PRIOR:
                    value[rows] = self.prior(task).to(value.dtype)
                elif source != MODEL:
                    name = self.head_input(source)
                    answer = unimodal.heads[name][task](encoded[name].pooled[rows])
                    if source >= len(self.input_names):
                        answer = heads[task].average([out[task][rows], answer])
                    value[rows] = answer.to(value.dtype)
            out[task] = value
        return out, answered
