"""Tells every objective where training is (``set_progress``, a fraction in [0, 1]) before each step,
for objectives with a schedule (the adversarial objective's reversal strength)."""

from __future__ import annotations

from typing import Any

from mmcli.training.callbacks.base import Callback


class ObjectiveSchedule(Callback):
    def on_step_begin(self, run: Any) -> None:
        fraction = run.state["step"] / max(run.total_steps, 1)
        for objective in run.model.objectives.values():
            objective.set_progress(fraction)
