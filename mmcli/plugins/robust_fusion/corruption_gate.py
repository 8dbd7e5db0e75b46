"""Corruption gate (``model.corruption_gate``): a detector per input regresses, from the encoder's
vector, the fused model's loss with the input and the gain of treating it as missing (trained on
corrupted copies of training rows that never reach the task loss); at inference an input whose
expected gain exceeds ``margin`` times its expected loss is treated as missing for that row.
Why it regresses losses instead of classifying rows as noisy: docs/robust-fusion.md.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.data.corruption import corrupt_rows
from mmcli.inference.wrappers import InferenceWrapper
from mmcli.models.outputs import EncoderOutput, finish
from mmcli.objectives.base import Objective
from mmcli.plugins.robust_fusion.task_protocol import robust_tasks
from mmcli.settings import Settings
from mmcli.training.callbacks.base import Callback

NAME = "corruption_gate"
TREATED_AS_MISSING = "treated_as_missing"  # metrics and predictions key: input -> rows the gate hid
COPY_SUFFIX = "_corrupted_copy"  # batch keys (training): corrupted copies of some rows, and their "_mask"
ROWS_SUFFIX = "_corrupted_rows"  # batch key (training): the index of the rows the copies were made from


class CorruptionGateSettings(Settings):
    rate: float = Field(0.25, gt=0, lt=1, description="share of training rows of each input copied and corrupted to "
                        "train its detector (the copies never reach the task heads)")
    min_level: float = Field(0.0, ge=0, le=1, description="training corruption levels are drawn from [min_level, 1] "
                             "(the noise model of evaluate --robustness)")
    margin: float = Field(0.1, ge=0, lt=1, description="at inference an input is treated as missing when its "
                          "detector expects the fused loss without it to be at least this fraction lower than with it")


class CorruptionDetector(Objective):
    """``detectors[input]``: ``pooled [B, D] -> [B, 2]``, the expected fused loss of the row with the
    input as it is, and the expected gain (that loss minus the loss with the input missing). Its loss
    is the detectors' squared error on the copies of the batch (None for a batch without copies)."""

    in_validation_loss = False

    def __init__(self, input_names: list[str], hidden_size: int, margin: float = 0.1) -> None:
        super().__init__(NAME, 1.0)
        self.detectors = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 2))
            for name in input_names
        })
        self.margin = margin
        self._model: Any = None

    def attach(self, model: nn.Module) -> None:
        self._model = weakref.ref(model)  # the encoders and tasks it scores rows with; weak: no cycle

    def drops(self, estimates: Tensor) -> Tensor:
        """``[B, 2]`` detector estimates -> ``[B]`` bool: the expected gain beats the margin."""
        expected_loss, expected_gain = estimates.unbind(-1)
        return expected_gain > self.margin * expected_loss.clamp_min(0)

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor | None:
        """Mean over inputs of the detector's squared error; squared error makes the estimates
        conditional means, which is what the expected-loss decision needs."""
        estimates, targets = self.training_estimates(batch, rep.encoded)
        terms = [F.mse_loss(estimates[name], targets[name]) for name in estimates if len(estimates[name])]
        return torch.stack(terms).mean() if terms else None

    def training_estimates(self, batch: dict[str, Tensor], encoded: dict[str, EncoderOutput]
                           ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(estimates, targets)`` per input, ``[N, 2]`` each, over the rows copied and their corrupted
        copies, each encoded as at inference. The targets are the fused model's own losses on the row:
        with the input as it is, and that minus the loss with the input treated as missing."""
        model = self._model()
        encoders = model.backbone.encoders
        estimates, targets = {}, {}
        for name, detector in self.detectors.items():
            if name + COPY_SUFFIX not in batch:
                continue
            rows = batch[name + ROWS_SUFFIX]
            both = torch.cat([rows, rows])  # originals, then their copies
            x = torch.cat([batch[name].index_select(0, rows), batch[name + COPY_SUFFIX]])
            mask = torch.cat([batch[f"{name}_mask"].index_select(0, rows), batch[name + COPY_SUFFIX + "_mask"]])
            with torch.no_grad(), evaluation_mode(encoders[name]):
                output = encoders[name](x, mask)
            # one pass scores every row twice: with the input as it is, then with it missing
            twice = torch.cat([both, both])
            others = {other: _rows(out, twice) for other, out in encoded.items() if other != name}
            absent = as_missing(output, torch.ones_like(output.present), encoders[name].missing.detach())
            losses = row_losses(model, {**others, name: _concat(output, absent)}, batch, twice)
            with_input, without = losses.chunk(2)
            present = output.present
            estimates[name] = detector(output.pooled[present])
            targets[name] = torch.stack([with_input, with_input - without], dim=-1)[present].to(estimates[name].dtype)
        return estimates, targets


@torch.no_grad()
def row_losses(model: Any, encoded: dict[str, EncoderOutput], batch: dict[str, Tensor], rows: Tensor) -> Tensor:
    """``[R]``: the weighted task loss of each row, predicted from ``encoded`` (rows ``rows`` of ``batch``)
    as at inference (evaluation mode, no gradient)."""
    with evaluation_mode(model):
        rep = model.backbone.fuse(encoded)
        tasks = robust_tasks(model.tasks)
        predictions = {name: task.predict(rep) for name, task in tasks.items()}
    return sum(task.weight * task.row_loss(predictions[name], batch[name].index_select(0, rows))
               for name, task in tasks.items())


class CorruptionGate(InferenceWrapper):
    """At inference, rows whose input the detector judges corrupted have that input made missing (mask
    cleared, tokens zeroed, pooled = the encoder's learned ``missing`` vector) before fusion."""

    key = TREATED_AS_MISSING

    def before_fusion(self, model: Any, encoded: dict[str, EncoderOutput], batch: dict[str, Tensor]
                      ) -> tuple[dict[str, EncoderOutput], dict[str, Tensor]]:
        detector = model.objectives[NAME]
        gated, flagged = {}, {}
        for name, output in encoded.items():
            rows = detector.drops(detector.detectors[name](output.pooled)) & output.present
            flagged[name] = rows
            gated[name] = as_missing(output, rows, model.backbone.encoders[name].missing) if rows.any() else output
        return gated, flagged

    def summarize(self, report: dict[str, Tensor]) -> dict[str, int]:
        return {name: int(flags.sum()) for name, flags in report.items()}

    def row_fields(self, report: dict[str, Tensor], row: int) -> dict[str, Any]:
        return {TREATED_AS_MISSING: [name for name, flags in report.items() if bool(flags[row])]}

    def unusual_rows(self, report: dict[str, Tensor]) -> dict[str, Tensor]:
        return dict(report)


class CorruptedCopies(Callback):
    """Adds, for each input (``name -> (modality, spec)``), corrupted copies of a random ``rate`` of the
    rows where it is present, at levels drawn uniformly from ``[min_level, 1]``, under ``name +
    "_corrupted_copy"`` (and ``"..._mask"``, and the rows' index under ``"_corrupted_rows"``); the
    batch's own rows are not changed. Uses the global torch RNG, which checkpoints save, so resumed
    runs draw the same copies. Runs after modality dropout and before modality noise."""

    order = 20

    def __init__(self, inputs: dict[str, tuple[str, dict]], rate: float, min_level: float) -> None:
        self.inputs, self.rate, self.min_level = inputs, rate, min_level

    def transform_batch(self, batch: dict[str, Tensor], run: Any) -> dict[str, Tensor]:
        return add_corrupted_copies(batch, self.inputs, self.rate, self.min_level)


def add_corrupted_copies(batch: dict[str, Tensor], inputs: dict[str, tuple[str, dict]], rate: float,
                         min_level: float) -> dict[str, Tensor]:
    out = dict(batch)
    for name, (modality, spec) in inputs.items():
        mask = batch[f"{name}_mask"]
        present = mask.flatten(1).any(dim=1).cpu()
        chosen = (torch.rand(len(present)) < rate) & present
        if not chosen.any():
            continue
        index = chosen.nonzero().squeeze(1).to(mask.device)
        rows = {name: batch[name].index_select(0, index), f"{name}_mask": mask.index_select(0, index)}
        levels = min_level + (1 - min_level) * torch.rand(len(index))
        corrupted = corrupt_rows(rows, name, modality, spec, levels)
        out[name + COPY_SUFFIX], out[name + COPY_SUFFIX + "_mask"] = corrupted[name], corrupted[f"{name}_mask"]
        out[name + ROWS_SUFFIX] = index
    return out


def _rows(output: EncoderOutput, rows: Tensor) -> EncoderOutput:
    """Rows ``rows`` of an encoder output, detached (a view for deciding, not for learning)."""
    return EncoderOutput(tokens=output.tokens.detach().index_select(0, rows),
                         mask=output.mask.index_select(0, rows), pooled=output.pooled.detach().index_select(0, rows))


def _concat(first: EncoderOutput, second: EncoderOutput) -> EncoderOutput:
    return EncoderOutput(tokens=torch.cat([first.tokens, second.tokens]), mask=torch.cat([first.mask, second.mask]),
                         pooled=torch.cat([first.pooled, second.pooled]))


def as_missing(output: EncoderOutput, rows: Tensor, missing: Tensor) -> EncoderOutput:
    """The encoders' own treatment of a row without data, applied to ``rows``."""
    return finish(output.tokens, output.mask & ~rows.unsqueeze(1), output.pooled, missing)


@contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """``module`` and its children in evaluation mode for the block, then as they were."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
