"""The callback contract: what happens around the trainer's steps and epochs.

The trainer calls, on every process: ``on_train_begin`` once; ``on_epoch_begin`` once the model is in
training mode; ``on_step_begin`` before each step; ``transform_batch`` on each training batch (each micro-batch with
``training.grad_accum_steps``), in ascending ``order`` (batch transforms such as modality dropout and
noise; evaluation never sees them); ``on_after_backward`` between the (last) backward pass and gradient
clipping; ``on_step_end`` after each optimizer step; ``on_epoch_end`` after validation with the
epoch's record; ``on_train_end`` once the best weights are loaded, whose returned dicts are merged
into ``metrics.json``'s ``training`` section; ``on_interrupt`` when a signal stops training at a step
boundary; ``on_close`` last, also after an error. A callback that writes files does so only where
``run.is_main`` (rank 0 under data parallelism) and calls ``run.sync()`` before saving anything that
must not hold a diverged model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

if TYPE_CHECKING:
    from mmcli.training.run_state import TrainingRun


class Callback:
    order: ClassVar[int] = 50  # batch transforms run in ascending order (ties: the order callbacks were given)

    def on_train_begin(self, run: "TrainingRun") -> None:
        pass

    def on_epoch_begin(self, run: "TrainingRun") -> None:
        pass

    def on_step_begin(self, run: "TrainingRun") -> None:
        pass

    def transform_batch(self, batch: dict[str, Tensor], run: "TrainingRun") -> dict[str, Tensor]:
        return batch

    def on_after_backward(self, run: "TrainingRun") -> None:
        pass

    def on_step_end(self, run: "TrainingRun") -> None:
        pass

    def on_epoch_end(self, run: "TrainingRun", record: dict[str, Any], improved: bool) -> None:
        pass

    def on_train_end(self, run: "TrainingRun") -> dict[str, Any] | None:
        return None

    def on_interrupt(self, run: "TrainingRun") -> None:
        """A signal asked training to stop (at a step boundary): save what resuming needs."""

    def on_close(self, run: "TrainingRun") -> None:
        pass
