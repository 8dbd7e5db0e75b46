"""Checkpoints: resume from the newest full checkpoint, save one every ``training.checkpoint_every``
steps and at each epoch end (pruned to ``training.keep_checkpoints``), and keep the best epoch's
weights apart in ``checkpoints/best`` (the moving average of the weights with ``training.ema``). Only
the main process writes; every process resumes, each with its own RNG states. Under several
processes a save is a collective (every rank's RNG states and loss sums are gathered; under FSDP the
shards too), so every process saves at the same steps. What a checkpoint holds and how it is written:
:mod:`mmcli.training.checkpoints`."""

from __future__ import annotations

from functools import partial
from typing import Any

from mmcli.runs import BEST_CHECKPOINT, CHECKPOINTS
from mmcli.training.callbacks.base import Callback
from mmcli.training.checkpoints import (ResumeExtras, ResumeTargets, list_checkpoints, load_training_state,
                                        save_checkpoint, save_training_state)
from mmcli.training.distributed import gather_to_main
from mmcli.training.rng import capture_rng


def _inner(optimizer: Any) -> Any:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it


class Checkpointing(Callback):
    def on_train_begin(self, run: Any) -> None:
        folder = run.run_dir / CHECKPOINTS
        if run.resume and list_checkpoints(folder):
            latest = list_checkpoints(folder)[-1]
            targets = ResumeTargets(rank=run.accelerator.process_index, ema=run.ema, scaler=run.accelerator.scaler)
            if run.sharded:
                from mmcli.training.sharding import load_full_optimizer_state

                targets.load_model = run.load_state
                targets.load_optimizer = partial(load_full_optimizer_state, _inner(run.optimizer))
            run.restore(load_training_state(latest, run.model, run.optimizer, run.scheduler, targets),
                        rank=run.accelerator.process_index)
            run.resumed_from = str(latest)

    def _save(self, run: Any) -> None:
        run.sync()  # never save the state of a model whose loss went non-finite
        # what each process holds of its own: its RNG states and its share of the epoch's loss sums
        ranks = gather_to_main((capture_rng(), run.tracker.state_dict()), run.accelerator) or []
        extras = ResumeExtras(rng=[rng for rng, _ in ranks], ema=run.ema.state_dict() if run.ema else None)
        if run.sharded:
            from mmcli.training.sharding import full_optimizer_state

            extras.model_state = run.model_state()
            extras.optimizer_state = full_optimizer_state(_inner(run.optimizer))
        if run.is_main:
            scaler = run.accelerator.scaler
            extras.scaler = scaler.state_dict() if scaler is not None else None
            saved = save_training_state(run.run_dir / CHECKPOINTS, run.state["step"], run.model, run.optimizer,
                                        run.scheduler, run.progress_record([losses for _, losses in ranks]),
                                        run.recipe.training.keep_checkpoints,
                                        extras)
            run.last_checkpoint = str(saved)

    def on_step_end(self, run: Any) -> None:
        every = run.recipe.training.checkpoint_every
        if every and run.state["step"] % every == 0:
            self._save(run)

    def on_interrupt(self, run: Any) -> None:
        self._save(run)

    def on_epoch_end(self, run: Any, record: dict[str, Any], improved: bool) -> None:
        if improved and (run.is_main or run.sharded):
            with run.averaged_weights():  # the best checkpoint holds what was validated
                state = run.model_state() if run.sharded else None
                if run.is_main:
                    save_checkpoint(run.run_dir / BEST_CHECKPOINT, run.model,
                                    {"epoch": record["epoch"], "step": record["step"], "monitor": run.monitor.label,
                                     "score": float(run.monitor.score(record))}, state)
        self._save(run)
