"""``hf_vlm``: a pretrained vision-language model as a whole (``model: {type: hf_vlm, path: DIR}``): a
``transformers`` image-text-to-text model (LLaVA, Qwen2-VL, SmolVLM, Idefics3 ... through
``AutoModelForImageTextToText``) with its processor, from a local folder, or built from a config.

It stands in for the backbone and the decoder: the image input reaches it as the batch's pixels (the input's
encoder is ``raw``), which the folder's image processor turns into the model's pixel values (on the batch's
device); the conversation is the chat codec's, rendered with the folder's tokenizer and chat template
(:mod:`vlm_chat`), its one image token widened into the image's tokens as the folder's processor widens it
for an image of that size. Training is the model's next-token loss on the answers only (prompt, image and
padding labelled -100); search is the model's own ``generate``. The model is ``decoder.vlm``: its parts
(``vision``, ``projector``, ``lm``) freeze, take adapters and learning rates by name, and its frozen
weights are referred to from checkpoints, not copied."""

from __future__ import annotations

from typing import Any, Iterator, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from mmcli.errors import RecipeError
from mmcli.models.parts import VLM_PIECES
from mmcli.objectives.decoders._common import (IGNORE, DecoderContext, GenerationSettings, chunked_token_loss,
                                               quiet_transformers, rows_per_forward, token_log_probs)
from mmcli.objectives.decoders.chat import ANSWER, LAST, PAD
from mmcli.objectives.decoders.vlm_chat import VisionChatTargets, vlm_codec
from mmcli.registries import DECODERS
from mmcli.settings import Settings


class HFVLMConfig(Settings):
    type: Literal["hf_vlm"] = "hf_vlm"
    path: str | None = Field(None, description="a local image-text-to-text model folder (save_pretrained output of "
                                               "the model and its processor), or pkg:DIST")
    config: dict[str, Any] | None = Field(None, description="a transformers config to build the model from (model_type "
                                                           "and sizes; the vocabulary is a tokenizer trained on the "
                                                           "train split), e.g. {model_type: llava, vision_config: "
                                                           "{model_type: clip_vision_model, ...}, text_config: "
                                                           "{model_type: llama, ...}}")
    processor: dict[str, Any] = Field(default_factory=dict, description="with config: settings of the model type's "
                                      "processor (e.g. {num_additional_image_tokens: 1}) and its image_processor "
                                      "(default: resize to the vision tower's image_size)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    vocabulary_columns: list[str] = Field(default_factory=list, description="with config: train the tokenizer on "
                                          "these columns' train rows (and vocabulary_texts)")
    vocabulary_texts: list[str] = Field(default_factory=list, description="with vocabulary_columns: texts the "
                                        "tokenizer also learns")

    @model_validator(mode="after")
    def _one_source(self) -> "HFVLMConfig":
        if (self.path is None) == (self.config is None):
            raise ValueError("give the vision-language model as path (a local folder) or config (built from a "
                             "transformers config), one of the two")
        if self.processor and self.config is None:
            raise ValueError("processor: only for a model built from a config (a folder brings its own processor)")
        return self


@DECODERS.register("hf_vlm", HFVLMConfig)
class HFVisionLanguageModel(nn.Module):
    """See the module docstring. Batch: the image input's uint8 ``[B, C, S, S]`` and mask; target int32
    ``[B, 2, L]`` from :class:`VisionChatTargets`."""

    codec = staticmethod(vlm_codec)
    whole_model_reads = ("image",)  # the modalities this model reads itself (model.type: hf_vlm; encoder raw)

    def __init__(self, config: HFVLMConfig, context: DecoderContext, codec: VisionChatTargets) -> None:
        super().__init__()
        field = "model"  # the recipe gives the model there (model.type: hf_vlm)
        if len(context.inputs) != 1:
            raise RecipeError(f"tasks.{context.name}.inputs: a vision-language model reads one image input, got "
                              f"{len(context.inputs)}")
        self.context, self.settings, self.input = context, config, context.inputs[0]
        self.tokenizer = codec.tokenizer
        self.vlm = load_vlm(config, codec, field)
        self.processor = codec.processor if codec.processor is not None else \
            build_processor(config, self.vlm.config, codec, field)
        self.image_token_id = codec.image_token_id
        self.pad_id, self.eos_id = int(self.tokenizer.pad_token_id), int(self.tokenizer.eos_token_id)
        self._expansions: dict[tuple[int, int], dict[str, list[int]]] = {}

    # ------------------------------------------------------------------------------------- parts

    def adaptable_parts(self) -> dict[str, dict[str, nn.Module]]:
        """``training.adapters.parts`` names: ``lm``, ``vision`` (also the image input's name), ``projector``."""
        parts: dict[str, dict[str, nn.Module]] = {}
        for path, module in self.vlm.named_modules():
            pieces = path.split(".")  # the model's top pieces (model.language_model, ...); not the output layer
            if len(pieces) <= 2 and pieces[-1] in VLM_PIECES and pieces[-1] != "lm_head":
                parts.setdefault(VLM_PIECES[pieces[-1]], {})[f"vlm.{path}"] = module
        if "vision" in parts:
            parts[self.input] = parts["vision"]
        return parts

    # ------------------------------------------------------------------------------------- inputs

    def _pixels(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor, tuple[int, int]]:
        """The image processor's outputs for the rows that have an image, which rows those are ``[B]``, and the
        images' size. Pixels are processed where the batch is (a torchvision processor runs on the GPU)."""
        images, mask = batch[self.input], batch[f"{self.input}_mask"]
        present = mask.reshape(len(mask), -1).any(dim=1)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        chosen = images[present]
        if not len(chosen):
            return {}, present, size
        if chosen.shape[1] == 1:  # a grayscale input: the model's tower reads RGB
            chosen = chosen.expand(-1, 3, -1, -1)
        if getattr(self.processor.image_processor, "backend", None) != "torchvision":
            chosen = chosen.cpu()  # a PIL or numpy processor reads host memory
        with quiet_transformers():
            features = self.processor.image_processor(images=list(chosen), return_tensors="pt")
        dtype = next(self.vlm.parameters()).dtype
        return {key: value.to(images.device, dtype=dtype if value.is_floating_point() else value.dtype)
                for key, value in features.items() if isinstance(value, Tensor)}, present, size

    def _expansion(self, size: tuple[int, int]) -> dict[str, list[int]]:
        """What the processor writes for one image of ``size`` in place of its image token: ``input_ids`` (the
        image tokens, and any the family puts around them) and the per-token inputs it writes with the ids
        (Qwen2-VL's ``mm_token_type_ids``), found by asking the processor once per size."""
        if size not in self._expansions:
            image = torch.zeros(3, *size, dtype=torch.uint8)
            with quiet_transformers():
                written = self.processor(text=[self.processor.image_token], images=[image], add_special_tokens=False,
                                         return_tensors="pt")
            length = written["input_ids"].shape[-1]
            self._expansions[size] = {key: [int(i) for i in value[0].tolist()] for key, value in written.items()
                                      if key.endswith("_ids") and tuple(value.shape) == (1, length)}
        return self._expansions[size]

    def _sequence(self, ids: Tensor, real: Tensor, roles: Tensor, present: Tensor, expansion: dict[str, list[int]]
                  ) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """``({input_ids [B, T], attention_mask [B, T], per-token inputs}, labels [B, T], lengths [B])``,
        right-padded: the image token widened into ``expansion`` in rows that have the image, dropped in rows
        that have none (text positions take 0 in the per-token inputs). ``T`` is the target length plus the
        expansion's, the same for every batch, so nothing waits for the host."""
        ids, roles = ids.long(), roles.long()
        size = len(expansion["input_ids"])
        here = (ids == self.image_token_id) & real
        shown = here & present.unsqueeze(1)
        counts = real.long() + shown.long() * (size - 1) - (here & ~shown).long()
        total = ids.shape[1] + size - 1
        start = counts.cumsum(dim=1) - counts
        text = real & ~here
        index = torch.where(text, start, torch.full_like(start, total))  # the extra last slot takes the rest
        b, device = ids.shape[0], ids.device
        wanted = text & ((roles == ANSWER) | (roles == LAST))
        labels = torch.full((b, total + 1), IGNORE, dtype=torch.long, device=device)
        labels = labels.scatter(1, index, torch.where(wanted, ids, IGNORE))
        first = (start * shown).sum(dim=1, keepdim=True)
        positions = first + torch.arange(size, device=device)
        positions = torch.where(shown.any(dim=1, keepdim=True), positions, total)
        inputs = {}
        for key, widened in expansion.items():
            text_values = ids if key == "input_ids" else torch.zeros_like(ids)
            filler = self.pad_id if key == "input_ids" else 0
            out = torch.full((b, total + 1), filler, dtype=torch.long, device=device).scatter(1, index, text_values)
            inputs[key] = out.scatter(1, positions, torch.tensor(widened, device=device).expand(b, -1))[:, :total]
        attention = torch.zeros(b, total + 1, dtype=torch.long, device=device).scatter(1, index, text.long())
        attention = attention.scatter(1, positions, shown.any(dim=1, keepdim=True).long().expand(-1, size))
        inputs["attention_mask"] = attention[:, :total]
        return inputs, labels[:, :total], counts.sum(dim=1)

    # ------------------------------------------------------------------------------------- the contract

    def _logits(self, rep: Any, batch: dict[str, Tensor], target: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """The next-token logits and labels, a few rows at a time without gradients."""
        images = (self.input, f"{self.input}_mask")
        size = (int(batch[self.input].shape[-2]), int(batch[self.input].shape[-1]))
        length = target.shape[-1] + len(self._expansion(size)["input_ids"])
        rows = rows_per_forward(len(target), length, self.vlm.get_input_embeddings().num_embeddings)
        for start in range(0, len(target), rows):
            part = slice(start, start + rows)
            ids, roles = target[part, 0], target[part, 1]
            pixels, present, size = self._pixels({key: batch[key][part] for key in images})
            inputs, labels, _ = self._sequence(ids, roles != PAD, roles, present, self._expansion(size))
            logits = self.vlm(**inputs, **pixels, use_cache=False).logits
            yield logits[:, :-1], labels[:, 1:]

    def loss(self, rep: Any, batch: dict[str, Tensor], target: Tensor) -> Tensor:
        return chunked_token_loss(self._logits(rep, batch, target), self.settings.label_smoothing)

    def sequence_log_prob(self, rep: Any, batch: dict[str, Tensor] | None, target: Tensor) -> Tensor:
        return torch.cat([token_log_probs(logits, labels) for logits, labels in self._logits(rep, batch or {}, target)])

    def generate(self, rep: Any, batch: dict[str, Tensor] | None, settings: GenerationSettings,
                 target: Tensor | None = None, streamer: Any = None) -> Tensor:
        """The answer to each row's prompt (its conversation before the last answer), ids ``[B, L']``."""
        ids, roles = target[:, 0], target[:, 1]
        pixels, present, size = self._pixels(batch or {})
        prompt = (roles != PAD) & (roles != LAST)
        inputs, _, lengths = self._sequence(ids, prompt, roles, present, self._expansion(size))
        total = inputs["input_ids"].shape[1]
        # left padding: generation continues every row from its own last prompt token
        shift = (total - lengths).unsqueeze(1)
        source = (torch.arange(total, device=ids.device).unsqueeze(0) - shift) % total
        inputs = {key: value.gather(1, source) for key, value in inputs.items()}
        with quiet_transformers():
            out = self.vlm.generate(**inputs, **pixels, pad_token_id=self.pad_id, eos_token_id=self.eos_id,
                                    streamer=streamer, **settings.transformers_kwargs(self.context.max_length))
        return out[:, total:]


def load_vlm(config: HFVLMConfig, codec: VisionChatTargets, field: str) -> nn.Module:
    """The image-text-to-text model of a local folder, or one built from a config sized to the tokenizer; its
    embeddings grow to the tokenizer when chat markers were added to it."""
    from transformers import AutoConfig, AutoModelForImageTextToText
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = codec.tokenizer
    if config.path is not None:
        from mmcli.pretrained import mark_pretrained, resolve_model_path

        try:
            with quiet_transformers():
                vlm = AutoModelForImageTextToText.from_pretrained(resolve_model_path(config.path),
                                                                  local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise RecipeError(f"{field}.path: {config.path} holds no image-text-to-text model transformers can load "
                              f"({' '.join(str(error).split())[:160]})",
                              hint="give the folder of an image-text-to-text model (LLaVA, Qwen2-VL, SmolVLM, "
                                   "Idefics3)") from None
        mark_pretrained(vlm, config.path)
    else:
        settings = dict(config.config or {})
        kind = settings.pop("model_type", None)
        if not kind:
            raise RecipeError(f"{field}.config: name the model_type (e.g. llava, idefics3)")
        text = {**dict(settings.pop("text_config", None) or {}), "vocab_size": len(tokenizer),
                "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                "eos_token_id": tokenizer.eos_token_id}
        try:
            vlm_config = AutoConfig.for_model(kind, **settings, text_config=text, image_token_id=codec.image_token_id)
            vlm = AutoModelForImageTextToText.from_config(vlm_config)
        except (ValueError, KeyError, TypeError) as error:
            raise RecipeError(f"{field}.config: {' '.join(str(error).split())[:200]}") from None
    if len(tokenizer) > vlm.get_input_embeddings().num_embeddings:
        vlm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return vlm


def build_processor(config: HFVLMConfig, vlm_config: Any, codec: VisionChatTargets, field: str) -> Any:
    """The processor of a model built from a config: the model type's own processor and image processor
    classes, with the tokenizer trained on the data, the image size of the vision tower, and the settings the
    processor shares with the model (patch size, feature selection) taken from its config."""
    import inspect

    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    kind = vlm_config.model_type
    names, processor_name = IMAGE_PROCESSOR_MAPPING_NAMES.get(kind), PROCESSOR_MAPPING_NAMES.get(kind)
    if not names or not processor_name:
        raise RecipeError(f"{field}.config: transformers has no processor for model_type '{kind}'",
                          hint="save the model with its processor to a folder and give path")
    vision = getattr(vlm_config, "vision_config", None)
    settings = dict(config.processor)
    image_settings = dict(settings.pop("image_processor", None) or {})
    size = getattr(vision, "image_size", None)
    if size:
        image_settings = {"size": {"height": size, "width": size}, "crop_size": {"height": size, "width": size},
                          **image_settings}
    image_class = getattr(transformers, names.get("torchvision") or names["pil"])
    shared = {"patch_size": getattr(vision, "patch_size", None),
              "vision_feature_select_strategy": getattr(vlm_config, "vision_feature_select_strategy", None),
              # a CLIP tower's class token comes out with the patches (LLaVA counts it, then drops it)
              "num_additional_image_tokens": 1 if getattr(vision, "model_type", "") == "clip_vision_model" else 0,
              "image_token": codec.image_token}
    processor_class = getattr(transformers, processor_name)
    accepted = inspect.signature(processor_class.__init__).parameters
    settings = {**{key: value for key, value in shared.items() if key in accepted and value is not None}, **settings}
    try:
        return processor_class(image_processor=image_class(**image_settings), tokenizer=codec.tokenizer, **settings)
    except (ValueError, KeyError, TypeError) as error:
        raise RecipeError(f"{field}.processor: {' '.join(str(error).split())[:200]}") from None

