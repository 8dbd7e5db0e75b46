"""The recipe schema, assembled from the registries.

Inputs are a union discriminated on ``modality``; encoders, fusions, tasks, objectives and loss
weightings are unions discriminated on ``type``; plug-ins add their ``model`` keys. So validation
and ``mmcli recipes schema`` always list exactly what is registered, also a component registered
after the schema was first built (it is rebuilt).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, create_model, model_validator

from mmcli import registries
from mmcli.errors import RecipeError
from mmcli.models.adapters import AdapterSettings
from mmcli.models.augmentation import AUGMENT_SETTINGS
from mmcli.models.backbone import SharedSpaceSettings
from mmcli.recipe import whole_model
from mmcli.recipe.stages import pretraining_recipe
from mmcli.registries import (ATTENTIONS, DEFAULT_ENCODER, ENCODERS, FUSIONS, LOSS_WEIGHTINGS, MODALITIES, OBJECTIVES,
                              PLUGINS, PROCESSORS)
from mmcli.settings import Settings
from mmcli.weighting import COMBINED_LOSS


class DataSettings(Settings):
    manifest: str = Field(description="CSV, JSONL or Parquet manifest; media paths are relative to it")
    split_column: str = Field("split", description="column naming each row's split; if absent, split_ratios are used")
    train_split: str = "train"
    validation_split: str | None = "validation"
    test_split: str | None = Field("test", description="the held-out split: evaluated after training (with the "
                                   "validation split) unless evaluation.splits says otherwise, and evaluate's default")
    split_ratios: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="seeded random split when the manifest has no split column",
    )
    id_column: str | None = Field(None, description="column with a unique row id (default: row number)")
    on_error: Literal["fail", "skip"] = Field("fail", description="bad rows: fail (exit 2) or skip (count + errors.jsonl)")
    cache_dir: str = Field(".mmcli-cache", description="where preprocessed Arrow caches are kept")
    train_fraction: float = Field(1.0, gt=0, le=1, description="train on a seeded subset of this share of the train "
                                  "split's rows (few-label fine-tuning, learning curves); processors are still fitted "
                                  "on every train row, and a recipe's pretrain stage uses every row unless it sets this")

    @model_validator(mode="after")
    def _check_ratios(self) -> "DataSettings":
        if any(r < 0 for r in self.split_ratios.values()) or abs(sum(self.split_ratios.values()) - 1) > 1e-6:
            raise ValueError("split_ratios must be non-negative and sum to 1")
        return self


class EmaSettings(Settings):
    decay: float = Field(0.999, gt=0, lt=1, description="after each optimizer step: average = decay * average + "
                         "(1 - decay) * weights")


class TrainingSettingsBase(Settings):
    """``training`` keys; ``loss_weighting`` (a registry union) is added in :func:`recipe_model`."""

    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="adamw (decoupled weight decay), adam "
                                                     "(weight decay as L2 in the gradient) or sgd")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(False, description="sgd only: Nesterov momentum")
    weight_decay: float | None = Field(None, ge=0, description="default: 0.01 with adamw (decoupled, as torch's "
                                       "AdamW), 0 with adam and sgd (where it is an L2 term in the gradient)")
    scheduler: Literal["constant", "cosine", "linear", "step", "plateau"] = Field(
        "cosine", description="learning rate after the warm-up: constant, cosine or linear decay to 0, step (times "
                              "gamma every step_epochs), plateau (times gamma after plateau_patience epochs without "
                              "a better monitored score)")
    warmup_ratio: float | None = Field(None, ge=0, le=1, description="share of the steps with a linear warm-up "
                                       "(default: 0.05 before cosine and linear decay, none before the others)")
    gamma: float = Field(0.1, gt=0, le=1, description="step and plateau: the factor")
    step_epochs: float = Field(1.0, gt=0, description="step: epochs between reductions")
    plateau_patience: int = Field(2, ge=0, description="plateau: epochs without improvement before a reduction")
    drop_last: bool = Field(True, description="drop each epoch's last incomplete training batch (false: train on it)")
    num_threads: int | None = Field(None, ge=1, description="CPU threads torch uses per process (default: the "
                                    "cores divided by the processes, fewer when other programs keep the cores busy; "
                                    "a warning says what was chosen)")
    grad_clip: float | None = Field(1.0, gt=0)
    early_stopping_patience: int | None = Field(None, ge=1, description="epochs without improvement before stopping")
    monitor: str | None = Field(None, description="what selects the best checkpoint and drives early stopping: "
                                                  "OBJECTIVE.METRIC (a task or an objective), or 'loss' for the weighted "
                                                  "validation loss of the objectives (default: the first task's main "
                                                  "metric, or 'loss' without tasks)")
    modality_dropout: float = Field(0.0, ge=0, lt=1, description="hide each input for this share of training rows (never all of a row's inputs)")
    modality_noise: float = Field(0.0, ge=0, lt=1, description="corrupt each input for this share of training rows, at a "
                                  "random noise level (the noise model of evaluate --robustness)")
    checkpoint_every: int | None = Field(None, ge=1, description="also save a full checkpoint every N steps (always at each epoch end)")
    keep_checkpoints: int = Field(2, ge=1, description="how many step checkpoints to keep (the best is kept apart)")
    on_nan: Literal["fail", "skip_batch"] = Field("fail", description="non-finite loss: stop with the step and task, or skip and count the batch")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="autocast the forward pass: bf16 (GPUs since Ampere, recent CPUs) or fp16 (GPUs only; with a "
                          "gradient scaler, saved in checkpoints); weights and optimizer state stay float32")
    grad_accum_steps: int = Field(1, ge=1, description="split each step's batch into this many micro-batches, whose "
                                  "gradients add up before one optimizer step: batch_size rows still make one step "
                                  "(less memory, the same schedule); batch_size must divide evenly")
    compile: bool = Field(False, description="torch.compile the model's training forward pass (the first steps "
                          "compile; worth it for long runs on GPUs)")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="several processes: ddp (a copy of the model per "
                                             "process) or fsdp (parameters, gradients and optimizer state sharded "
                                             "over the processes, torch FSDP2: models that do not fit one device)")
    ema: Union[EmaSettings, None] = Field(None, description="keep an exponential moving average of the weights; "
                                          "validation, the best checkpoint and the final model use it")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    trackers: list[Literal["csv", "tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=lambda: ["csv"], description="experiment trackers, writing into the run directory: csv "
        "(metrics.csv), tensorboard, mlflow (a SQLite store mlflow.db in the run, or MLFLOW_TRACKING_URI), wandb (offline by default)")
    freeze_encoders: int | Literal["always"] = Field(0, description="keep the encoders' weights (and BatchNorm "
                                                     "statistics) fixed for this many epochs, or 'always' (a linear "
                                                     "probe of an initialised backbone)")
    freeze: list[str] = Field(default_factory=list, description="parts that never train: an input's name or modality, "
                              "vision (image and video towers), towers, fusion, lm (a language model), projector, "
                              "cross_attention, heads (adapters inside a frozen part still train)")
    learning_rates: dict[str, float] = Field(default_factory=dict, description="a learning rate per part (as in "
                                             "freeze), e.g. {projector: 1e-3, lm: 2e-4}; other parameters use "
                                             "learning_rate")
    weight_decay_all: bool = Field(False, description="decay every parameter; by default norms, biases, embeddings, "
                                                      "positions and single scalars (temperatures, gates) are not "
                                                      "decayed, as in OpenCLIP and timm")
    adapters: Union[AdapterSettings, None] = Field(None, description="parameter-efficient training: LoRA adapters "
                                                   "(peft) in the named parts; the weights they adapt stop training")

    @model_validator(mode="after")
    def _check_freeze(self) -> "TrainingSettingsBase":
        if isinstance(self.freeze_encoders, int) and self.freeze_encoders < 0:
            raise ValueError("freeze_encoders must be a number of epochs (0 or more) or 'always'")
        if self.weight_decay is None:
            self.weight_decay = 0.01 if self.optimizer == "adamw" else 0.0
        if self.warmup_ratio is None:
            self.warmup_ratio = 0.05 if self.scheduler in ("cosine", "linear") else 0.0
        if self.batch_size % self.grad_accum_steps:
            raise ValueError(f"grad_accum_steps: batch_size ({self.batch_size}) must split into {self.grad_accum_steps} "
                             "equal micro-batches")
        for part, rate in self.learning_rates.items():
            if not rate > 0:
                raise ValueError(f"learning_rates.{part}: must be above 0")
        return self


class ExpectedMetric(Settings):
    split: str = "test"
    task: str = Field(description="a task or an objective")
    metric: str
    value: float
    tolerance: float = Field(ge=0)


class EvaluationSettings(Settings):
    splits: list[str] | None = Field(None, description="splits scored after training (default: "
                                                       "data.validation_split and data.test_split)")


def evaluation_splits(recipe: Any) -> list[str]:
    """The splits a finished training scores: ``evaluation.splits``, or the validation and test splits."""
    if recipe.evaluation.splits is not None:
        return list(recipe.evaluation.splits)
    return [split for split in (recipe.data.validation_split, recipe.data.test_split) if split]


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
        share_encoder=(Union[str, None], Field(None, description="use the encoder of this other input of the same "
                                                                 "modality (one set of weights for both; its encoder "
                                                                 "settings apply)")),
        preprocessing=(processor_config, Field(default_factory=processor_config)),
        encoder=(
            _tagged_union(encoders.configs(), "type"),
            Field(default_factory=lambda: {"type": DEFAULT_ENCODER[modality]}, validate_default=True),
        ),
        **_augment_field(modality),
    )


def _augment_field(modality: str) -> dict[str, Any]:
    """``augment`` for the modalities that have training-time augmentation (none for text)."""
    settings = AUGMENT_SETTINGS.get(modality)
    if settings is None:
        return {}
    return {"augment": (Union[settings, None], Field(None, description="random changes to the training batches "
                                                                        "(never to validation or evaluation)"))}


def expand_whole_model(cls: type, data: Any) -> Any:
    # model: {type: hf_vlm, ...} is written into the text tasks and the inputs before they validate
    return whole_model.expand(data)


def _named_string(data: Any) -> Any:
    # `loss_weighting: static` is short for `loss_weighting: {type: static}`
    return {"type": data} if isinstance(data, str) else data


def _objective_configs(supervised: bool) -> list[type]:
    return [config for name, config in zip(OBJECTIVES.names(), OBJECTIVES.configs())
            if OBJECTIVES.get(name).supervised == supervised]


def _none_registered(data: Any) -> Any:
    shown = data.get("type") if isinstance(data, dict) else data
    raise ValueError(f"unknown objective {shown!r} (no objective without a target column is registered)")


def _optional_union(configs: list[type], tag: str) -> Any:
    """A tagged union of ``configs``; with none registered, every entry is an error."""
    return _tagged_union(configs, tag) if configs else Annotated[Any, BeforeValidator(_none_registered)]


def recipe_model() -> type:
    """The Recipe model for what is registered now (imports the component packages); rebuilt when
    a component was registered since."""
    PROCESSORS.names()
    for registered in (OBJECTIVES, LOSS_WEIGHTINGS, PLUGINS, FUSIONS, ATTENTIONS):
        registered.names()
    return _recipe_model(registries.generation)


@functools.cache
def _recipe_model(generation: int) -> type:
    inputs = _tagged_union([_input_model(m) for m in MODALITIES if m in PROCESSORS], "modality")
    tasks = _tagged_union(_objective_configs(supervised=True), "type")
    unsupervised = _objective_configs(supervised=False)
    fusion = _tagged_union(FUSIONS.configs(), "type")
    weighting = Annotated[_tagged_union(LOSS_WEIGHTINGS.configs(), "type"), BeforeValidator(_named_string)]
    plugin_fields: dict[str, Any] = {}
    for name in PLUGINS.names():
        plugin_fields.update(PLUGINS.get(name).model_settings)

    def model_fields() -> dict[str, Any]:  # the multimodal model's keys (a whole model's settings carry them too)
        return dict(
            hidden_size=(int, Field(64, ge=4)),
            dropout=(float, Field(0.1, ge=0, lt=1, description="dropout on the fused vector, before the task heads (a "
                                                              "head may add its own, tasks.NAME.dropout, default 0)")),
            fusion=(fusion, Field(default_factory=lambda: {"type": "concat"}, validate_default=True)),
            fusion_inputs=(Union[list[str], None], Field(None, min_length=1, description="the inputs the fusion "
                                                         "combines (default: every input); e.g. leave out a caption "
                                                         "that a contrastive objective aligns with the fused media")),
            attention=(
                Union[_tagged_union(ATTENTIONS.configs(), "type"), None],
                Field(None, description="cross-modal attention block applied to the encoder outputs before fusion "
                                        "(default: none)"),
            ),
            shared_space=(Union[SharedSpaceSettings, None],
                          Field(None, description="project every input's pooled vector into one shared space "
                                                  "(objectives that compare inputs read it; default: none)")),
            **plugin_fields,
        )

    model_settings = create_model(
        "ModelSettings", __base__=Settings,
        type=(Literal[whole_model.MULTIMODAL], Field(whole_model.MULTIMODAL, exclude=True, description=(
            "multimodal (towers, fusion, heads), or a whole pretrained model: "
            f"{', '.join(whole_model.whole_models()) or 'none registered'}"))),
        **model_fields())
    model_type = whole_model.model_union(model_settings, model_fields)
    training_settings = create_model(
        "TrainingSettings",
        __base__=TrainingSettingsBase,
        loss_weighting=(weighting, Field(default_factory=lambda: {"type": "static"}, validate_default=True,
                                         description="how the objectives' losses are combined (default: static, "
                                                     "each objective's weight)")),
    )
    plugins = [PLUGINS.get(name)() for name in PLUGINS.names()]

    def check_references(recipe: Any) -> Any:
        if not recipe.inputs:
            raise ValueError("inputs: at least one input is needed")
        whole_model.check(recipe)
        if not recipe.tasks and not recipe.objectives:
            raise ValueError("tasks: at least one task or objective is needed (a recipe without labels uses "
                             "'objectives:')")
        for section, names in (("inputs", recipe.inputs), ("tasks", recipe.tasks), ("objectives", recipe.objectives)):
            for name in names:
                if not NAME.fullmatch(name):
                    raise ValueError(f"{section}.{name}: names may use letters, digits, '_' and '-' and start with a letter")
        # inputs and tasks share the batch dictionary (x, x_mask, task), so their names must not collide
        taken = {key for name in recipe.inputs for key in (name, f"{name}_mask")}
        for section, names in (("tasks", recipe.tasks), ("objectives", recipe.objectives)):
            for name in names:
                if name in taken:
                    raise ValueError(f"{section}.{name}: the name is already used by an input or a task "
                                     f"(rename one of them)")
                taken.add(name)
        known = [*recipe.tasks, *recipe.objectives]
        monitor = recipe.training.monitor
        if monitor is not None and monitor != COMBINED_LOSS:
            target = monitor.split(".")[0]
            if target not in known:
                raise ValueError(f"training.monitor: unknown task or objective '{target}' (known: {', '.join(known)})")
        for i, item in enumerate(recipe.expected):
            if item.task not in known:
                raise ValueError(f"expected.{i}.task: unknown task or objective '{item.task}' (known: {', '.join(known)})")
        for name, cfg in recipe.inputs.items():
            other = cfg.share_encoder
            if other is None:
                continue
            if other not in recipe.inputs or other == name:
                raise ValueError(f"inputs.{name}.share_encoder: '{other}' is not another input")
            if recipe.inputs[other].modality != cfg.modality or recipe.inputs[other].share_encoder is not None:
                raise ValueError(f"inputs.{name}.share_encoder: '{other}' must be a {cfg.modality} input with an "
                                 "encoder of its own")
            if cfg.modality == "text" and cfg.preprocessing.tokenizer != "hf":
                raise ValueError(f"inputs.{name}.share_encoder: text inputs share an encoder only with one "
                                 "vocabulary (preprocessing.tokenizer: hf, the same tokenizer_path)")
        for name in recipe.model.fusion_inputs or []:
            if name not in recipe.inputs:
                raise ValueError(f"model.fusion_inputs: unknown input '{name}' (known: {', '.join(recipe.inputs)})")
        for name, cfg in [*recipe.tasks.items(), *recipe.objectives.items()]:
            cfg.check(recipe, name)
        for plugin in plugins:
            plugin.check(recipe)
        if recipe.pretrain is not None:
            try:
                pretraining_recipe(recipe)
            except RecipeError as error:
                raise ValueError(f"pretrain (the pretraining stage): {error.message}") from None
        return recipe

    recipe = create_model(
        "Recipe",
        __base__=Settings,
        __validators__={"whole_model": model_validator(mode="before")(expand_whole_model),
                        "check_references": model_validator(mode="after")(check_references)},
        name=(str, Field(..., pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", description="run name: one folder name (letters, digits, _ . -, not starting with . or -); the run directory is output_dir/name")),
        description=(str, ""),
        seed=(int, 0),
        output_dir=(str, "runs"),
        init=(Union[str, None], Field(None, description="a run directory whose best backbone weights initialise this "
                                                        "model (fine-tuning after 'mmcli pretrain'); not --resume, "
                                                        "which continues this run's own checkpoint")),
        pretrain=(Union[dict[str, Any], None], Field(None, description="the pretraining stage ('mmcli pretrain', the "
                                                                       "first stage of 'mmcli run'): recipe keys that "
                                                                       "differ for it (objectives, extra inputs, "
                                                                       "training); it has no tasks")),
        data=(DataSettings, ...),
        inputs=(dict[str, inputs], Field(..., description="input name -> modality, column, preprocessing, encoder")),
        tasks=(dict[str, tasks], Field(default_factory=dict, description="task name -> type, column, loss weight, head")),
        objectives=(dict[str, _optional_union(unsupervised, "type")],
                    Field(default_factory=dict, description="objective name -> type, weight, settings: losses "
                                                            "without a target column (pretraining, invariance)")),
        model=(model_type, Field(default_factory=model_settings)),
        training=(training_settings, Field(default_factory=training_settings)),
        evaluation=(EvaluationSettings, Field(default_factory=EvaluationSettings)),
        expected=(list[ExpectedMetric], Field(default_factory=list, description="metrics this recipe reproduces")),
        sweep=(list[dict[str, list[Any]]], Field(default_factory=list, description="grids of key.path -> values for 'mmcli run --sweep' (each grid's combinations, grids one after another)")),
    )
    return recipe
