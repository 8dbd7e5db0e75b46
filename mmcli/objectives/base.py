"""The objective contract: a module that owns its parameters, computes a loss from the backbone's
representation and the batch, and declares the metrics it reports (with their direction).

Supervised objectives (task types: classification, regression, ...) add a prediction, a target codec
and decoding (:mod:`mmcli.objectives._supervised`). Everything the trainer and the inference path
need from an objective is here; nothing in this file knows a particular objective.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field
from torch import Tensor, nn

from mmcli.settings import Settings

if TYPE_CHECKING:
    from mmcli.models.representation import Representation


class ObjectiveSettings(Settings):
    """Fields every objective has; a registered objective adds ``type: Literal[name]`` and its own."""

    weight: float = Field(1.0, ge=0, description="weight of this objective's loss in the total")

    def target_columns(self, name: str) -> dict[str, Any]:
        """Manifest columns preprocess must encode for this objective: batch key -> column settings with
        ``column``, ``type`` and ``target_codec(spec=None)`` (e.g. group ids). None by default."""
        return {}

    def check(self, recipe: Any, name: str) -> None:
        """Raise ``ValueError`` for settings that do not fit the recipe (an unknown input, ...)."""


def check_inputs(names: list[str], recipe: Any, where: str, allowed: tuple[str, ...] = ()) -> None:
    """``ValueError`` naming ``where`` for a name that is neither an input of the recipe nor ``allowed``."""
    known = [*recipe.inputs, *allowed]
    for name in names:
        if name not in known:
            raise ValueError(f"{where}: unknown input '{name}' (known: {', '.join(known)})")


def check_input_modality(name: str, recipe: Any, where: str, modalities: tuple[str, ...], hint: str = "") -> None:
    """``check_inputs`` for the one input an objective reads, which must be of one of ``modalities``."""
    check_inputs([name], recipe, where)
    modality = recipe.inputs[name].modality
    if modality not in modalities:
        wanted = ", ".join(modalities[:-1]) + (" or " if len(modalities) > 1 else "") + modalities[-1]
        raise ValueError(f"{where}: '{name}' holds {modality}; the objective reads {wanted} only{hint}")


@dataclass(frozen=True)
class BuildContext:
    """What an objective may need to size itself, given by the model builder.

    ``inputs``: input name -> modality (recipe order); ``input_specs``: input name -> fitted processor
    spec; ``target_spec``: the fitted target codec's spec (supervised objectives); ``late_inputs``:
    with a fusion that combines predictions (late fusion), the inputs a supervised objective keeps one
    head for; ``shared_size``: width of the shared space (``model.shared_space``), None without one;
    ``tasks``: the supervised objectives built so far (name -> objective); ``fused_width``: the fused
    vector's width (``hidden_size`` unless the fusion widens it); ``target_specs``: batch key -> fitted spec of
    every target column preprocess encoded (a task's ``report_by`` categories, ...)."""

    name: str
    hidden_size: int
    inputs: dict[str, str]
    input_specs: dict[str, dict] = field(default_factory=dict)
    target_spec: dict | None = None
    late_inputs: tuple[str, ...] = ()
    shared_size: int | None = None
    tasks: dict[str, Any] = field(default_factory=dict)
    fused_size: int | None = None  # width of the fused vector when it is not hidden_size
    target_specs: dict[str, dict] = field(default_factory=dict)

    @property
    def fused_width(self) -> int:
        return self.fused_size or self.hidden_size


class Objective(nn.Module, abc.ABC):
    """A loss on the representation. Registered objectives are built as ``Cls(config, context)``.

    Class attributes: ``supervised`` (it predicts a target column); ``in_validation_loss`` (its loss
    counts in the validation loss that ``training.monitor: loss`` and early stopping read; auxiliary
    training aids say False); ``metrics``: metric name -> greater is better; ``main_metric``;
    ``reads_fusion``: whether it reads the fused vector (``rep.fused``, ``fused_for``, ``task_vectors``,
    ``late``): the model builds the fusion only when an objective does, so that no untrained layer is kept,
    counted or written by ``encode``. True unless an objective says otherwise (a class attribute, or set
    in ``__init__`` when its settings decide).
    """

    supervised: ClassVar[bool] = False
    reads_fusion: bool = True
    in_validation_loss: ClassVar[bool] = True
    metrics: ClassVar[dict[str, bool]] = {}
    main_metric: ClassVar[str | None] = None

    def __init__(self, name: str, weight: float) -> None:
        super().__init__()
        self.name = name
        self.weight = float(weight)

    @abc.abstractmethod
    def loss(self, rep: "Representation", batch: dict[str, Tensor]) -> Tensor | None:
        """Scalar loss for this batch, or None when the batch holds nothing for it (it is then left
        out of the total for this step)."""

    def attach(self, model: nn.Module) -> None:
        """Called once by the model that holds this objective. An objective that needs other parts of
        the model (the encoders, the other objectives) keeps a weak reference here; the default keeps
        nothing."""

    def outputs(self, rep: "Representation") -> dict[str, Tensor]:
        """Per-row tensors (first dimension B) that inference gathers over a split for :meth:`evaluate`."""
        return {}

    def evaluate(self, outputs: dict[str, Tensor], tensors: dict[str, Tensor]) -> dict[str, Any]:
        """Metrics (name -> value) from the gathered ``outputs`` of a whole split and its tensors."""
        return {}

    def set_progress(self, fraction: float) -> None:
        """Where training is, in [0, 1], before each step (for objectives with a schedule); the default
        ignores it."""

    def greater_is_better(self, metric: str) -> bool:
        return self.metrics[metric]


def accuracy_of(right: Tensor) -> tuple[float, int] | None:
    """(mean, count) of the 1/0 entries of ``right`` (right or wrong; -1: not scored), None when none is."""
    scored = right[right >= 0]
    return (float(scored.mean()), len(scored)) if len(scored) else None
