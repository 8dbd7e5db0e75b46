"""Robust fusion: a fused model that survives a missing or destroyed input (README, "Robust fusion").

Recipe keys (``model`` section): ``unimodal_loss`` (auxiliary single-input heads, an objective),
``corruption_gate`` (a detector objective, a batch transform adding corrupted copies, and an
inference wrapper that drops inputs it judges corrupted) and ``missing_fallback`` (an inference
wrapper calibrated after training by a callback). Modality dropout and noise are the trainer's own
batch transforms (``training.modality_dropout``, ``training.modality_noise``).
"""

from __future__ import annotations

from typing import Any, Callable, Union

from pydantic import Field

from mmcli.plugins import Plugin
from mmcli.plugins.robust_fusion.corruption_gate import (CorruptedCopies, CorruptionDetector, CorruptionGate,
                                                         CorruptionGateSettings)
from mmcli.plugins.robust_fusion.corruption_gate import NAME as GATE
from mmcli.plugins.robust_fusion.missing_fallback import NAME as FALLBACK
from mmcli.plugins.robust_fusion.missing_fallback import MissingFallback, MissingFallbackSettings
from mmcli.plugins.robust_fusion.task_protocol import has_robust_task_type, robust_tasks
from mmcli.plugins.robust_fusion.unimodal import UnimodalObjective
from mmcli.registries import PLUGINS


@PLUGINS.register("robust_fusion", None)
class RobustFusion(Plugin):
    model_settings = {
        "unimodal_loss": (float, Field(0.0, ge=0, description=(
            "weight of auxiliary unimodal losses: a head per (input, task) on each encoder's own vector, trained "
            "with the fused heads on the rows where that input is present (0 = off). Every encoder then learns what "
            "its input predicts alone, which counters one modality drowning out the others and keeps the fused "
            "model useful when an input goes missing"))),
        "corruption_gate": (Union[CorruptionGateSettings, None], Field(None, description=(
            "a detector per input, trained on corrupted copies of training rows, that makes the model treat an "
            "input it judges corrupted as missing (default: none)"))),
        "missing_fallback": (Union[MissingFallbackSettings, None], Field(None, description=(
            "after training, measure on the validation split what answers each task best when an input is missing "
            "(the fused model, its prior, or the single-input head of a remaining input, with model.unimodal_loss) "
            "and answer from it (default: off)"))),
    }

    def check(self, recipe: Any) -> None:
        model = recipe.model
        asked = [key for key, on in (("unimodal_loss", model.unimodal_loss > 0),
                                     ("corruption_gate", model.corruption_gate is not None),
                                     ("missing_fallback", model.missing_fallback is not None)) if on]
        if asked and not has_robust_task_type(recipe):
            raise ValueError(f"model.{asked[0]}: needs a task with single-input heads, priors and per-row losses "
                             f"(classification or regression); this recipe's tasks have none")

    def objectives(self, recipe: Any, context: Callable[[str], Any]) -> dict[str, Any]:
        # built after every other objective: recipes without these keep their seeded initialisation
        model, added = recipe.model, {}
        if model.unimodal_loss > 0:
            built = context("unimodal")
            added["unimodal"] = UnimodalObjective(model.unimodal_loss, robust_tasks(built.tasks), list(recipe.inputs))
        if model.corruption_gate is not None:
            added[GATE] = CorruptionDetector(list(recipe.inputs), recipe.model.hidden_size,
                                             margin=model.corruption_gate.margin)
        return added

    def wrappers(self, recipe: Any, objectives: dict[str, Any]) -> dict[str, Any]:
        model, added = recipe.model, {}
        if model.corruption_gate is not None:
            added[GATE] = CorruptionGate()
        if model.missing_fallback is not None:
            tasks = robust_tasks({name: objective for name, objective in objectives.items() if objective.supervised})
            added[FALLBACK] = MissingFallback(list(recipe.inputs), tasks, confidence=model.missing_fallback.confidence,
                                              complete_rows=model.missing_fallback.complete_rows)  # buffers only
        return added

    def callbacks(self, recipe: Any, preprocessing: dict | None) -> list[Any]:
        from mmcli.plugins.robust_fusion.calibration import FallbackCalibration
        from mmcli.training.callbacks.modality_noise import noise_inputs

        model, added = recipe.model, []
        if model.corruption_gate is not None:
            inputs = noise_inputs(recipe, preprocessing, "model.corruption_gate")
            added.append(CorruptedCopies(inputs, model.corruption_gate.rate, model.corruption_gate.min_level))
        if model.missing_fallback is not None:
            added.append(FallbackCalibration())
        return added
