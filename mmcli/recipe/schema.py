"""The recipe schema, assembled from the registries.

Inputs are a union discriminated on ``modality``; encoders, fusions and tasks are unions
discriminated on ``type``; so validation and ``mmcli recipes schema`` always list exactly
what is registered.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model, model_validator

from mmcli.config import Settings
from mmcli.registries import ATTENTIONS, DEFAULT_ENCODER, ENCODERS, FUSIONS, MODALITIES, PROCESSORS, TASKS


class DataSettings(Settings):
    manifest: str = Field(description="CSV, JSONL or Parquet manifest; media paths are relative to it")
    split_column: str = Field("split", description="column naming each row's split; if absent, split_ratios are used")
    train_split: str = "train"
    validation_split: str | None = "validation"
    test_split: str | None = "test"
    split_ratios: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="seeded random split when the manifest has no split column",
    )
    id_column: str | None = Field(None, description="column with a unique row id (default: row number)")
    on_error: Literal["fail", "skip"] = Field("fail", description="bad rows: fail (exit 2) or skip (count + errors.jsonl)")
    cache_dir: str = Field(".mmcli-cache", description="where preprocessed Arrow caches are kept")

    @model_validator(mode="after")
    def _check_ratios(self) -> "DataSettings":
        if any(r < 0 for r in self.split_ratios.values()) or abs(sum(self.split_ratios.values()) - 1) > 1e-6:
            raise ValueError("split_ratios must be non-negative and sum to 1")
        return self


COMBINED_LOSS = "loss"  # training.monitor value: the weighted validation loss of all tasks


class TrainingSettings(Settings):
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0)
    early_stopping_patience: int | None = Field(None, ge=1, description="epochs without improvement before stopping")
    monitor: str | None = Field(None, description="what selects the best checkpoint and drives early stopping: TASK.METRIC, "
                                                  "or 'loss' for the weighted validation loss of all tasks (default: the "
                                                  "first task's main metric)")
    modality_dropout: float = Field(0.0, ge=0, lt=1, description="hide each input for this share of training rows (never all of a row's inputs)")
    modality_noise: float = Field(0.0, ge=0, lt=1, description="corrupt each input for this share of training rows, at a "
                                  "random noise level (the noise model of evaluate --robustness)")
    checkpoint_every: int | None = Field(None, ge=1, description="also save a full checkpoint every N steps (always at each epoch end)")
    keep_checkpoints: int = Field(2, ge=1, description="how many step checkpoints to keep (the best is kept apart)")
    on_nan: Literal["fail", "skip_batch"] = Field("fail", description="non-finite loss: stop with the step and task, or skip and count the batch")
    mixed_precision: Literal["no", "bf16"] = "no"
    device: Literal["auto", "cpu", "cuda"] = "auto"


class CorruptionGateSettings(Settings):
    rate: float = Field(0.25, gt=0, lt=1, description="share of training rows of each input copied and corrupted to "
                        "train its detector (the copies never reach the task heads)")
    min_level: float = Field(0.0, ge=0, le=1, description="training corruption levels are drawn from [min_level, 1] "
                             "(the noise model of evaluate --robustness)")
    margin: float = Field(0.1, ge=0, lt=1, description="at inference an input is treated as missing when its "
                          "detector expects the fused loss without it to be at least this fraction lower than with it")


class MissingFallbackSettings(Settings):
    confidence: float = Field(0.95, ge=0.5, lt=1, description="one-sided confidence (paired over validation rows) "
                              "with which the fused model must beat a task's prior to keep answering it with an "
                              "input missing, and a single-input head must beat the fused model to replace it")
    complete_rows: bool = Field(True, description="also decide for rows with every input present: the fused model, "
                                "or its average with a single-input head where that has the lower validation loss")


class ExpectedMetric(Settings):
    split: str = "test"
    task: str
    metric: str
    value: float
    tolerance: float = Field(ge=0)


class EvaluationSettings(Settings):
    splits: list[str] = Field(default_factory=lambda: ["validation", "test"])


NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _tagged_union(configs: list[type], tag: str) -> Any:
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[tuple(configs)], Field(discriminator=tag)]


def _input_model(modality: str) -> type:
    encoders = ENCODERS[modality]
    processor_config = PROCESSORS._entries[modality][1]
    return create_model(
        f"{modality.capitalize()}Input",
        __base__=Settings,
        modality=(Literal[modality], ...),  # type: ignore[valid-type]
        column=(str, Field(..., description="manifest column holding this input")),
        optional=(bool, Field(False, description="an empty cell means the modality is missing for that row")),
        preprocessing=(processor_config, Field(default_factory=processor_config)),
        encoder=(
            _tagged_union(encoders.configs(), "type"),
            Field(default_factory=lambda: {"type": DEFAULT_ENCODER[modality]}, validate_default=True),
        ),
    )


@functools.cache
def recipe_model() -> type:
    """Build the Recipe model from what is registered now (imports the component packages)."""
    PROCESSORS.names()
    inputs = _tagged_union([_input_model(m) for m in MODALITIES if m in PROCESSORS], "modality")
    tasks = _tagged_union(TASKS.configs(), "type")
    fusion = _tagged_union(FUSIONS.configs(), "type")

    model_settings = create_model(
        "ModelSettings",
        __base__=Settings,
        hidden_size=(int, Field(64, ge=4)),
        dropout=(float, Field(0.1, ge=0, lt=1)),
        unimodal_loss=(float, Field(0.0, ge=0, description=(
            "weight of auxiliary unimodal losses: a head per (input, task) on each encoder's own vector, trained "
            "with the fused heads on the rows where that input is present (0 = off). Every encoder then learns what "
            "its input predicts alone, which counters one modality drowning out the others and keeps the fused "
            "model useful when an input goes missing"))),
        corruption_gate=(
            Union[CorruptionGateSettings, None],
            Field(None, description="a detector per input, trained on corrupted copies of training rows, that makes "
                                    "the model treat an input it judges corrupted as missing (default: none)"),
        ),
        missing_fallback=(
            Union[MissingFallbackSettings, None],
            Field(None, description="after training, measure on the validation split what answers each task best "
                                    "when an input is missing (the fused model, its prior, or the single-input head "
                                    "of a remaining input, with model.unimodal_loss) and answer from it (default: off)"),
        ),
        fusion=(fusion, Field(default_factory=lambda: {"type": "concat"}, validate_default=True)),
        attention=(
            Union[_tagged_union(ATTENTIONS.configs(), "type"), None],
            Field(None, description="cross-modal attention block applied to the encoder outputs before fusion "
                                    "(default: none)"),
        ),
    )

    def check_references(recipe: Any) -> Any:
        if not recipe.inputs:
            raise ValueError("inputs: at least one input is needed")
        if not recipe.tasks:
            raise ValueError("tasks: at least one task is needed")
        for section, names in (("inputs", recipe.inputs), ("tasks", recipe.tasks)):
            for name in names:
                if not NAME.fullmatch(name):
                    raise ValueError(f"{section}.{name}: names may use letters, digits, '_' and '-' and start with a letter")
        # inputs and tasks share the batch dictionary (x, x_mask, task), so their names must not collide
        taken = {key for name in recipe.inputs for key in (name, f"{name}_mask")}
        for name in recipe.tasks:
            if name in taken:
                raise ValueError(f"tasks.{name}: the name is already used by an input (rename the task or the input)")
        monitor = recipe.training.monitor
        if monitor is not None and monitor != COMBINED_LOSS:
            task = monitor.split(".")[0]
            if task not in recipe.tasks:
                raise ValueError(f"training.monitor: unknown task '{task}' (known: {', '.join(recipe.tasks)})")
        for i, item in enumerate(recipe.expected):
            if item.task not in recipe.tasks:
                raise ValueError(f"expected.{i}.task: unknown task '{item.task}' (known: {', '.join(recipe.tasks)})")
        return recipe

    recipe = create_model(
        "Recipe",
        __base__=Settings,
        __validators__={"check_references": model_validator(mode="after")(check_references)},
        name=(str, Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="run name; the run directory is output_dir/name")),
        description=(str, ""),
        seed=(int, 0),
        output_dir=(str, "runs"),
        data=(DataSettings, ...),
        inputs=(dict[str, inputs], Field(..., description="input name -> modality, column, preprocessing, encoder")),
        tasks=(dict[str, tasks], Field(..., description="task name -> type, column, loss weight, head")),
        model=(model_settings, Field(default_factory=model_settings)),
        training=(TrainingSettings, Field(default_factory=TrainingSettings)),
        evaluation=(EvaluationSettings, Field(default_factory=EvaluationSettings)),
        expected=(list[ExpectedMetric], Field(default_factory=list, description="metrics this recipe reproduces")),
        sweep=(list[dict[str, list[Any]]], Field(default_factory=list, description="grids of key.path -> values for 'mmcli run --sweep' (each grid's combinations, grids one after another)")),
    )
    return recipe
