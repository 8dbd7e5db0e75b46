"""The backbone: one encoder per input -> optional cross-modal attention -> fusion (-> shared-space
projections), returning a :class:`Representation`. It knows nothing of tasks or losses."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.encoders._width import ToHidden
from mmcli.models.outputs import EncoderOutput
from mmcli.models.representation import Representation
from mmcli.models.seeded import seeded
from mmcli.registries import ATTENTIONS, ENCODERS, FUSIONS
from mmcli.settings import Settings


PRECOMPUTED = "__precomputed"  # batch key suffix: an encoder's own precomputed outputs for the rows


class SharedSpaceSettings(Settings):
    size: int | None = Field(None, ge=1, description="width of the shared space (default: model.hidden_size)")
    tied: bool = Field(False, description="one projection for every input instead of one per input")


class Backbone(nn.Module):
    """``forward(batch) -> Representation``; ``encode`` and ``fuse`` are its two halves, so that an
    inference wrapper can act on the encodings before they are fused.

    ``batch[name]`` and ``batch[name + "_mask"]`` are read for each input; other keys are ignored.
    """

    def __init__(self, encoders: dict[str, nn.Module], fusion: nn.Module | None, attention: nn.Module | None = None,
                 dropout: float = 0.1, shared: nn.ModuleDict | None = None, fusion_inputs: list[str] | None = None) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion_inputs = list(fusion_inputs) if fusion_inputs else None  # None: every input
        self.attention = attention  # None: no parameters, no state-dict keys
        self.fusion = fusion  # None when no objective reads the fused vector
        self.dropout = nn.Dropout(dropout)
        self.shared = shared  # input -> Linear(D, P) (one shared Linear when tied); None: no shared space

    def encode(self, batch: dict[str, Tensor]) -> dict[str, EncoderOutput]:
        """Each encoder on its input; on what it precomputed for the rows instead, where the batch has
        it (``name + PRECOMPUTED``: a frozen pretrained tower's outputs, computed once per row)."""
        return {name: encoder(batch.get(name + PRECOMPUTED, batch[name]), batch[f"{name}_mask"])
                for name, encoder in self.encoders.items()}

    def fuse(self, encoded: dict[str, EncoderOutput]) -> Representation:
        attended = encoded if self.attention is None else self.attention(encoded)
        shared = {}
        if self.shared is not None:
            shared = {name: self.shared[name if name in self.shared else "tied"](output.pooled)
                      for name, output in encoded.items()}
        fused = attended if self.fusion_inputs is None else {name: attended[name] for name in self.fusion_inputs}
        fusion = self.fusion
        return Representation(encoded=encoded, inputs=attended, shared=shared, dropout=self.dropout,
                              fuse=None if fusion is None else (lambda: fusion(fused)))

    def forward(self, batch: dict[str, Tensor]) -> Representation:
        return self.fuse(self.encode(batch))


def check_name(kind: str, name: str) -> None:
    # module names become state-dict keys; '.' would make them ambiguous (torch refuses them)
    if not name or "." in name:
        raise RecipeError(f"{kind} name '{name}' must be non-empty and contain no '.'")


def build_encoders(recipe: Any, preprocessing: dict) -> dict[str, nn.Module]:
    """One encoder per input, sized by its fitted processor spec, at its own width (``encoder.width``) or
    ``model.hidden_size``."""
    encoders = {}
    hidden = recipe.model.hidden_size
    for name, cfg in recipe.inputs.items():
        check_name("input", name)
        if getattr(cfg, "share_encoder", None):
            continue
        spec = {**preprocessing["inputs"][name]["spec"], "input": name}  # lets encoder errors name the recipe key
        width = getattr(cfg.encoder, "width", None) or hidden
        with seeded(recipe.seed, f"encoders.{name}"):
            encoder = ENCODERS[cfg.modality].build(cfg.encoder, spec=spec, hidden_size=width)
            encoders[name] = encoder if width == hidden else ToHidden(encoder, width, hidden)
    for name, cfg in recipe.inputs.items():
        other = getattr(cfg, "share_encoder", None)
        if other:
            _check_shareable(name, other, preprocessing)
            encoders[name] = encoders[other]  # one module: one set of weights, trained by both inputs
    return {name: encoders[name] for name in recipe.inputs}


def _check_shareable(name: str, other: str, preprocessing: dict) -> None:
    """Two inputs can share an encoder when their tensors have the same layout (the encoder keeps the
    statistics of the input it was built for)."""
    mine, theirs = preprocessing["inputs"][name]["spec"], preprocessing["inputs"][other]["spec"]
    for key in ("channels", "size", "n_features", "num_frames", "max_length", "vocab_size", "tokenizer_path"):
        if mine.get(key) != theirs.get(key):
            raise RecipeError(f"inputs.{name}.share_encoder: '{name}' and '{other}' are preprocessed to different "
                              f"shapes ({key}: {mine.get(key)} and {theirs.get(key)})",
                              hint="give both the same preprocessing settings")


def fusion_combines_predictions(recipe: Any) -> bool:
    return bool(getattr(FUSIONS.get(recipe.model.fusion.type), "combines_predictions", False))


def build_fusion(recipe: Any) -> nn.Module:
    per_task = {"task_names": list(recipe.tasks)} if getattr(recipe.model.fusion, "per_task", False) else {}
    return FUSIONS.build(recipe.model.fusion, input_names=fusion_inputs(recipe), hidden_size=recipe.model.hidden_size,
                         **per_task)


def fusion_inputs(recipe: Any) -> list[str]:
    """The inputs the fusion combines: ``model.fusion_inputs``, or every input (recipe order)."""
    return list(recipe.model.fusion_inputs or recipe.inputs)


def build_attention(recipe: Any) -> nn.Module | None:
    config = recipe.model.attention
    return None if config is None else \
        ATTENTIONS.build(config, input_names=list(recipe.inputs), hidden_size=recipe.model.hidden_size)


def fused_size(recipe: Any) -> int:
    """Width of the fused vector: model.hidden_size, unless the fusion says otherwise (concat without projection)."""
    width = getattr(recipe.model.fusion, "fused_size", None)
    return width(len(fusion_inputs(recipe)), recipe.model.hidden_size) if width else recipe.model.hidden_size


def shared_size(recipe: Any) -> int | None:
    config = recipe.model.shared_space
    return None if config is None else (config.size or recipe.model.hidden_size)


def build_shared(recipe: Any) -> nn.ModuleDict | None:
    size = shared_size(recipe)
    if size is None:
        return None
    hidden = recipe.model.hidden_size
    if recipe.model.shared_space.tied:
        return nn.ModuleDict({"tied": nn.Linear(hidden, size)})
    return nn.ModuleDict({name: nn.Linear(hidden, size) for name in recipe.inputs})
