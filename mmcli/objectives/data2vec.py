"""data2vec (Baevski et al. 2022): self-distillation with one recipe for text, images and audio. A teacher,
the exponential moving average of the input's encoder, sees the whole input; the student (the encoder
itself) sees it with regions hidden ([MASK] tokens for text, image cells or audio frames set to the input's
mean) and regresses, at the hidden positions, the average of the teacher's top K transformer layers (each
instance-normalised over positions). The teacher follows the student with a decay that rises from
``ema_decay`` to ``ema_end`` over training; it is part of the model, so checkpoints and resume hold it.

The encoder must be a transformer (text ``transformer``, image ``vit``, audio ``transformer``): the targets
are its layers' outputs."""

from __future__ import annotations

import copy
import weakref
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from torch.nn import functional as F

from mmcli.errors import RecipeError
from mmcli.objectives.base import BuildContext, Objective, ObjectiveSettings, check_input_modality
from mmcli.objectives.masked_features import hide_draws, hide_regions
from mmcli.objectives.masked_text import WORD_MASK_ID
from mmcli.registries import OBJECTIVES


class Data2VecConfig(ObjectiveSettings):
    type: Literal["data2vec"] = "data2vec"
    input: str = Field(description="a text, image or audio input with a transformer encoder")
    mask_ratio: float = Field(0.5, gt=0, lt=1, description="share of the positions hidden from the student")
    top_k: int = Field(2, ge=1, description="the teacher's top K layers are averaged into the targets")
    ema_decay: float = Field(0.999, gt=0, lt=1, description="the teacher's decay at the start of training")
    ema_end: float = Field(0.9999, gt=0, le=1, description="its decay at the end (rising linearly)")

    @model_validator(mode="after")
    def _rising(self) -> "Data2VecConfig":
        if self.ema_end < self.ema_decay:
            raise ValueError("ema_end is below ema_decay (the decay rises during training)")
        return self

    def check(self, recipe: Any, name: str) -> None:
        check_input_modality(self.input, recipe, f"objectives.{name}.input", ("text", "image", "audio"))


@OBJECTIVES.register("data2vec", Data2VecConfig)
class Data2Vec(Objective):
    reads_fusion = False  # one input's own tokens
    """Its validation loss (a fixed mask, the teacher as it is) is its measure."""

    def __init__(self, config: Data2VecConfig, context: BuildContext) -> None:
        super().__init__(context.name, config.weight)
        self.input, self.modality = config.input, context.inputs[config.input]
        self.ratio, self.top_k = config.mask_ratio, config.top_k
        self.start, self.end, self.decay = config.ema_decay, config.ema_end, config.ema_decay
        spec = context.input_specs[config.input]
        self.mask_id = int(spec.get("mask_id", WORD_MASK_ID))
        self.register_buffer("special", torch.tensor(spec.get("special_ids", list(range(5))), dtype=torch.long))
        shape = (-1, 1, 1) if self.modality == "image" else (-1, 1)
        mean = spec.get("mean", 0.0)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(shape) if self.modality != "text"
                             else torch.zeros(()))
        self.head = nn.Linear(context.hidden_size, context.hidden_size)
        self.teacher: nn.Module | None = None
        self._model: Any = None

    def attach(self, model: nn.Module) -> None:
        self._model = weakref.ref(model)
        encoder = model.backbone.encoders[self.input]
        layers = _layers(encoder)
        if layers is None:
            raise RecipeError(f"objectives.{self.name}: the '{self.input}' encoder has no transformer layers to take "
                              "targets from", hint="use encoder type transformer (text, audio) or vit (image)")
        if layers[0].linear1.in_features != self.head.in_features:
            raise RecipeError(f"objectives.{self.name}: the '{self.input}' encoder has a width of its own; data2vec "
                              "regresses its layers at model.hidden_size", hint=f"remove inputs.{self.input}.encoder.width")
        self.teacher = copy.deepcopy(encoder).requires_grad_(False)  # saved with the model: resume keeps it

    def set_progress(self, fraction: float) -> None:
        self.decay = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)

    @torch.no_grad()
    def _follow(self, encoder: nn.Module) -> None:
        """The teacher moves toward the student: ``t = d * t + (1 - d) * s`` (buffers copied)."""
        for teacher, student in zip(self.teacher.parameters(), encoder.parameters()):
            teacher.lerp_(student.detach(), 1 - self.decay)
        for teacher, student in zip(self.teacher.buffers(), encoder.buffers()):
            teacher.copy_(student)

    @torch.no_grad()
    def _targets(self, x: Tensor, mask: Tensor, tokens: int) -> Tensor:
        """``[B, T, D]``: the teacher's top K layers on the whole input, instance-normalised, averaged."""
        outputs: list[Tensor] = []
        layers = _layers(self.teacher)
        hooks = [layer.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for layer in layers[-self.top_k:]]
        was_training = self.teacher.training
        self.teacher.eval()
        try:
            self.teacher(x, mask)
        finally:
            for hook in hooks:
                hook.remove()
            self.teacher.train(was_training)
        normalised = [F.instance_norm(out.float().transpose(1, 2)).transpose(1, 2) for out in outputs]
        average = torch.stack(normalised).mean(dim=0)
        return average[:, -tokens:]  # a CLS token, when there is one, comes first

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor:
        encoder = self._model().backbone.encoders[self.input]
        if self.training:
            self._follow(encoder)
        output = rep.encoded[self.input]
        real = output.mask.bool()
        x, mask = batch[self.input], batch[f"{self.input}_mask"]
        hidden = (hide_draws(real.shape, real.device, self.training) < self.ratio) & real
        if self.modality == "text":
            hidden = hidden & ~torch.isin(x, self.special)
            student_input = x.masked_fill(hidden, self.mask_id)
        else:
            student_input = hide_regions(x, hidden, self.modality, self.mean)
        tokens = encoder(student_input, mask).tokens
        targets = self._targets(x, mask, tokens.shape[1])
        error = F.smooth_l1_loss(self.head(tokens).float(), targets, reduction="none").mean(dim=-1)
        return (error * hidden).sum() / hidden.sum().clamp(min=1)


def _layers(encoder: nn.Module) -> nn.ModuleList | None:
    """The transformer layers of an encoder (its ``nn.TransformerEncoder``'s), or None."""
    for module in encoder.modules():
        if isinstance(module, nn.TransformerEncoder):
            return module.layers
    return None
