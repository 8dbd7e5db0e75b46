"""Conversations as a whole vision-language model reads them (decoder ``hf_vlm``): the chat codec
(:class:`ChatTargets`) with the model folder's own tokenizer and chat template, the input's placeholder
(``<image>``) written as the model's image token. A template that reads each turn's content as a list of
parts (``[{"type": "image"}, {"type": "text", ...}]``, as SmolVLM's and LLaVA's processors have) is given
the turns that way; one that reads plain texts, as they are. A row holds one image, so its conversation
shows the placeholder at most once; the model widens that one token into the image's tokens.

A model built from a config has a tokenizer trained on the train split's conversations, whose image token
is the placeholder itself. Torch-free; ``transformers`` is imported lazily."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from mmcli.errors import BadValue, RecipeError
from mmcli.objectives.decoders.chat import ChatTargets, placeholder
from mmcli.objectives.decoders.lm_tokenizer import _with_placeholders, from_trained_json, trained_tokenizer

PROBE_QUESTION, PROBE_ANSWER = "probe question words", "probe answer words"


class VisionChatTargets(ChatTargets):
    """Cells -> int32 ``[2, max_length]`` (ids, roles) as :class:`ChatTargets`, rendered for a vision-language
    model: ``image_token`` stands where the placeholder is; ``content_lists``: the template reads parts."""

    def __init__(self, settings: Any, placeholders: list[str], tokenizer: Any = None, train: Any = None,
                 processor: Any = None, image_token: str | None = None, content_lists: bool = False) -> None:
        super().__init__(settings, placeholders, tokenizer, train)
        self.processor = processor  # the folder's processor (None for a model built from a config)
        self.image_token = image_token or placeholders[0]
        self.content_lists = content_lists

    def render_template(self, turns: list[dict[str, str]], tokenize: bool = False,
                        add_generation_prompt: bool = False) -> str:
        shown = [self._shown(turn) for turn in turns]
        return self.tokenizer.apply_chat_template(shown, tokenize=tokenize, add_generation_prompt=add_generation_prompt)

    def _shown(self, turn: dict[str, str]) -> dict[str, Any]:
        mark = self.placeholders[0]
        if not self.content_lists:
            return {"role": turn["role"], "content": turn["content"].replace(mark, self.image_token)}
        pieces = [piece for piece in re.split(f"({re.escape(mark)})", turn["content"]) if piece]
        parts = [{"type": "image"} if piece == mark else {"type": "text", "text": piece} for piece in pieces]
        return {"role": turn["role"], "content": parts}

    def _encode_one(self, value: Any) -> np.ndarray:
        shown = sum(turn["content"].count(self.placeholders[0]) for turn in self.turns(value))
        if shown > 1:
            raise BadValue(f"the conversation shows {self.placeholders[0]} {shown} times; the model reads one image "
                           "per row (write it once)")
        return super()._encode_one(value)

    @property
    def image_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(self.image_token))

    def spec(self) -> dict[str, Any]:
        return super().spec() | {"image_token": self.image_token, "content_lists": self.content_lists}


def vlm_codec(task: Any, spec: dict | None) -> VisionChatTargets:
    """The target codec of a text task whose decoder is a whole vision-language model."""
    config, placeholders = task.decoder, [placeholder(name) for name in task.inputs or []]
    if config.path is not None:
        processor = load_processor(config.path, "model.path")  # the recipe writes the model there (model.type)
        tokenizer, image_token = processor.tokenizer, str(processor.image_token)
        template, content_lists = chat_template(tokenizer, processor, image_token)
        if template is None:  # no template renders a conversation: ChatML, with its markers added
            tokenizer.chat_template = None
            tokenizer = _with_placeholders(tokenizer, [])
        else:
            tokenizer.chat_template = template
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # padding is masked anyway
        return VisionChatTargets(task, placeholders, tokenizer, processor=processor, image_token=image_token,
                                 content_lists=content_lists)
    if spec is not None and spec.get("tokenizer_json"):
        return VisionChatTargets(task, placeholders, from_trained_json(spec["tokenizer_json"], placeholders),
                                 train=trained_tokenizer)
    return VisionChatTargets(task, placeholders,
                             train=lambda texts, marks: trained_tokenizer(texts, marks, task.vocab_size))


def load_processor(path: str, field: str) -> Any:
    """The processor (image processor + tokenizer) of a local model folder, or ``pkg:DIST``; never the network."""
    from mmcli.pretrained import resolve_model_path

    folder = resolve_model_path(path)
    if not Path(folder).is_dir():
        raise RecipeError(f"{field}: {path} is not a model folder", hint="download the model and give its local folder")
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RecipeError(f"{field}: {path} holds no image-text processor transformers can load "
                          f"({' '.join(str(error).split())[:160]})",
                          hint="give the folder of an image-text-to-text model (LLaVA, Qwen2-VL, SmolVLM, Idefics3)") \
            from None
    if getattr(processor, "image_processor", None) is None or not getattr(processor, "image_token", None) \
            or getattr(processor, "tokenizer", None) is None:
        raise RecipeError(f"{field}: {path} is not an image-text-to-text model (its processor is a "
                          f"{type(processor).__name__}, not one with an image processor, a tokenizer and an image "
                          "token)",
                          hint="give the folder of an image-text-to-text model (LLaVA, Qwen2-VL, SmolVLM, Idefics3); "
                               "a text-only language model goes in decoder: {type: hf_causal_lm, path: ...}")
    return processor


def chat_template(tokenizer: Any, processor: Any, image_token: str) -> tuple[str | None, bool]:
    """The first of the folder's chat templates (the tokenizer's, the processor's) that renders a probe
    conversation with its text and its image token, and whether it reads content as a list of parts (tried
    first: a template that reads both writes what surrounds an image, e.g. Qwen2-VL's vision markers, only
    for parts)."""
    candidates = []
    for template in (tokenizer.chat_template, getattr(processor, "chat_template", None)):
        if isinstance(template, dict):
            template = template.get("default")
        if template and template not in candidates:
            candidates.append(template)
    for template in candidates:
        for content_lists in (True, False):  # parts first: how the processors' own templates mark an image
            question = ([{"type": "image"}, {"type": "text", "text": PROBE_QUESTION}] if content_lists
                        else f"{image_token}{PROBE_QUESTION}")
            answer = [{"type": "text", "text": PROBE_ANSWER}] if content_lists else PROBE_ANSWER
            turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            try:
                text = tokenizer.apply_chat_template(turns, tokenize=False, chat_template=template)
            except Exception:  # noqa: BLE001 - a template that cannot render this form (jinja raises its own errors)
                continue
            if all(part in text for part in (PROBE_QUESTION, PROBE_ANSWER, image_token)):
                return template, content_lists
    return None, False

