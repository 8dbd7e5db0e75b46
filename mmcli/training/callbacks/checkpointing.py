"""Checkpoints: resume from the newest full checkpoint, save one every ``training.checkpoint_every``
steps and at each epoch end (pruned to ``training.keep_checkpoints``), and keep the best epoch's
weights apart in ``checkpoints/best``. Only the main process writes; every process resumes. What a
checkpoint holds and how it is written: :mod:`mmcli.training.checkpoints`."""

from __future__ import annotations

from typing import Any

from mmcli.runs import BEST_CHECKPOINT, CHECKPOINTS
from mmcli.training.callbacks.base import Callback
from mmcli.training.checkpoints import list_checkpoints, load_training_state, save_checkpoint, save_training_state


class Checkpointing(Callback):
    def on_train_begin(self, run: Any) -> None:
        folder = run.run_dir / CHECKPOINTS
        if run.resume and list_checkpoints(folder):
            latest = list_checkpoints(folder)[-1]
            run.restore(load_training_state(latest, run.model, run.optimizer, run.scheduler))
            run.resumed_from = str(latest)

    def _save(self, run: Any) -> None:
        run.sync()  # never save the state of a model whose loss went non-finite
        if run.is_main:
            saved = save_training_state(run.run_dir / CHECKPOINTS, run.state["step"], run.model, run.optimizer,
                                        run.scheduler, run.progress_record(), run.recipe.training.keep_checkpoints)
            run.last_checkpoint = str(saved)

    def on_step_end(self, run: Any) -> None:
        every = run.recipe.training.checkpoint_every
        if every and run.state["step"] % every == 0:
            self._save(run)

    def on_interrupt(self, run: Any) -> None:
        self._save(run)

    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        if improved and run.is_main:
            save_checkpoint(run.run_dir / BEST_CHECKPOINT, run.model,
                            {"epoch": record["epoch"], "step": record["step"], "monitor": run.monitor.label,
                             "score": float(run.monitor.score(record))})
        self._save(run)
