"""Missing-input fallback (``model.missing_fallback``): when an input is missing, each task answers
from the source measured (on the validation split, after training) to do best without it: the fused
model, a remaining input's single-input head, the average of the two, or the task's prior. Rows not
answered by the fused model are reported (``answered_by``); inputs the corruption gate hid count as
missing. Why and how the choice is made: docs/robust-fusion.md.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from mmcli.inference.wrappers import InferenceWrapper
from mmcli.plugins.robust_fusion.unimodal import NAME as UNIMODAL
from mmcli.settings import Settings

NAME = "missing_fallback"
ANSWERED_BY = "answered_by"  # metrics key: task -> {source: rows}; predictions: task -> source
MODEL, PRIOR = -1, -2  # sources besides single-input heads (input index i) and averages (inputs + i)


class MissingFallbackSettings(Settings):
    confidence: float = Field(0.95, ge=0.5, lt=1, description="one-sided confidence (paired over validation rows) "
                              "with which the fused model must beat a task's prior to keep answering it with an "
                              "input missing, and a single-input head must beat the fused model to replace it")
    complete_rows: bool = Field(True, description="also decide for rows with every input present: the fused model, "
                                "or its average with a single-input head where that has the lower validation loss")


class MissingFallback(InferenceWrapper):
    """Buffers: ``source [inputs, tasks]`` (what answers the task when the input is missing: ``MODEL``,
    ``PRIOR``, the index ``i`` of the input whose single-input head answers, or ``len(inputs) + i`` for
    the average of the fused model and that head), ``when_complete [tasks]`` (the same for rows with every
    input present: ``MODEL``, a head or an average) and ``priors.<task>`` (the task's constant
    prediction). They start as "the model" and "no labels" and are set by the calibration after
    training."""

    key = ANSWERED_BY

    def __init__(self, input_names: list[str], tasks: dict[str, Any], confidence: float = 0.95,
                 complete_rows: bool = True) -> None:
        super().__init__()
        self.input_names, self.task_names, self.confidence = list(input_names), list(tasks), confidence
        self.complete_rows = complete_rows
        self.register_buffer("source", torch.full((len(self.input_names), len(self.task_names)), MODEL))
        self.register_buffer("when_complete", torch.full((len(self.task_names),), MODEL))
        self.priors = torch.nn.Module()
        for name, task in tasks.items():
            self.priors.register_buffer(name, task.prior(torch.empty(0)))

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

    def after_prediction(self, model: Any, rep: Any, predictions: dict[str, Tensor]
                         ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(predictions, {task: [B] source codes})``. For a row missing input ``i``, task ``t`` answers
        from ``source[i, t]``; with several inputs missing the prior wins (one of them is one the task
        cannot do without), then the first single-input head (alone or averaged with the fused model)
        whose input is present; otherwise the fused model. A row with every input present answers from
        ``when_complete``."""
        encoded = rep.encoded
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
                    answer = model.objectives[UNIMODAL].predict(name, task, encoded[name].pooled[rows])
                    if source >= len(self.input_names):
                        answer = model.tasks[task].average([out[task][rows], answer])
                    value[rows] = answer.to(value.dtype)
            out[task] = value
        return out, answered

    def summarize(self, report: dict[str, Tensor]) -> dict[str, dict[str, int]]:
        """task -> {source: rows} for the rows answered other than by the fused model (source: "prior",
        the input whose single-input head answered, or "model+<input>": their average)."""
        return {task: {self.source_name(int(code)): int((codes == code).sum())
                       for code in codes.unique() if int(code) != MODEL}
                for task, codes in report.items()}

    def row_fields(self, report: dict[str, Tensor], row: int) -> dict[str, Any]:
        return {ANSWERED_BY: {task: self.source_name(int(codes[row])) for task, codes in report.items()
                              if int(codes[row]) != MODEL}}

    def unusual_rows(self, report: dict[str, Tensor]) -> dict[str, Tensor]:
        """task -> rows answered otherwise than a row with every input present is (by the fused model,
        or as ``complete_rows`` decided)."""
        return {task: codes != int(self.when_complete[self.task_names.index(task)]) for task, codes in report.items()}
