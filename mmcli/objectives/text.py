"""Text task: generate a text column (a caption, a description, an answer) with a decoder that reads the
inputs' tokens; teacher forcing in training, greedy / beam / sampling search at predict time; BLEU-4,
chrF, ROUGE-L, CIDEr-D and exact-match (VQA-normalised) accuracy. Its target codec turns texts into
``[BOS] tokens [EOS] [PAD]...`` ids with a tokenizer trained on the train split's targets."""

from __future__ import annotations

from typing import Any, Iterable, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from mmcli.cells import is_missing
from mmcli.errors import BadValue, DataError
from mmcli.objectives._supervised import SupervisedObjective, SupervisedSettings
from mmcli.objectives.base import BuildContext, check_inputs
from mmcli.objectives.decoders._common import DecoderContext, GenerationSettings
from mmcli.objectives.decoders.chat import ChatTargets
from mmcli.registries import DECODERS, OBJECTIVES

TEXT_METRICS = {"bleu": True, "chrf": True, "rouge_l": True, "cider": True, "vqa_accuracy": True}


def decoder_config(value: Any) -> Any:
    """Validate ``value`` as a registered decoder's settings (looked up when used, so decoders added
    later are known)."""
    configs = dict(zip(DECODERS.names(), DECODERS.configs()))
    if isinstance(value, tuple(configs.values())):
        return value
    if not isinstance(value, dict):
        raise ValueError("must be a decoder's settings, e.g. {type: transformer}")
    kind = value.get("type")
    if kind not in configs:
        raise ValueError(f"type: unknown decoder '{kind}' (known: {', '.join(configs)})")
    return configs[kind](**value)


class TextTargets:
    """Texts <-> int32 ids ``[max_length]``: ``[BOS] tokens [EOS]`` then padding (id 0); a row without a
    label is all padding. Texts longer than ``max_length - 2`` tokens are cut (``EOS`` kept)."""

    dtype = np.int32

    def __init__(self, settings: "TextConfig", tokenizer: Any = None) -> None:
        self.settings, self.tokenizer = settings, tokenizer
        self.missing = np.zeros(settings.max_length, dtype=np.int32)

    def fit(self, values: Iterable[Any]) -> "TextTargets":
        from mmcli.tokenization import load_hf, train_tokenizer

        cfg = self.settings
        if cfg.tokenizer == "hf":
            self.tokenizer = load_hf(cfg.tokenizer_path)  # type: ignore[arg-type]
            return self
        texts = [text for text in map(_text, values) if text]
        if not texts:
            raise DataError("no training row has a target text to build a vocabulary from")
        self.tokenizer = train_tokenizer(texts, cfg.tokenizer, cfg.vocab_size, 1, cfg.lowercase, cfg.max_length)
        return self

    @property
    def pad_id(self) -> int:
        return 0 if self.settings.tokenizer != "hf" else int(self.tokenizer.pad_token_id or 0)

    @property
    def bos_id(self) -> int:
        if self.settings.tokenizer != "hf":
            return int(self.tokenizer.token_to_id("[CLS]"))
        found = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.cls_token_id
        return int(found if found is not None else self.eos_id)

    @property
    def eos_id(self) -> int:
        if self.settings.tokenizer != "hf":
            return int(self.tokenizer.token_to_id("[SEP]"))
        found = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.sep_token_id
        return int(found)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer) if self.settings.tokenizer == "hf" else int(self.tokenizer.get_vocab_size())

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        values = list(values)
        for value in values:
            if not is_missing(value) and not isinstance(value, (str, int, float)):
                raise BadValue(f"target text is not a string: {type(value).__name__}")
        texts = [_text(value) for value in values]
        ids = np.zeros((len(texts), self.settings.max_length), dtype=np.int32)
        real = [row for row, text in enumerate(texts) if text]
        for row, tokens in zip(real, self._ids([texts[row] for row in real])):
            ids[row, : len(tokens)] = tokens
        return ids

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self.settings.tokenizer != "hf":
            return [[i for i, keep in zip(e.ids, e.attention_mask) if keep] for e in self.tokenizer.encode_batch(texts)]
        length = self.settings.max_length
        body = self.tokenizer(texts, add_special_tokens=False, truncation=True, max_length=length - 2)["input_ids"]
        return [[self.bos_id, *tokens, self.eos_id] for tokens in body]

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return np.asarray(encoded)[:, 0] != self.pad_id

    def answers(self, encoded: np.ndarray) -> list[str]:
        """The encoded targets as texts (what generation is scored against)."""
        return self.decode(np.asarray(encoded).tolist())

    def decode(self, ids: Iterable[Iterable[int]]) -> list[str]:
        """Token ids (with or without ``BOS``, cut at ``EOS``) -> texts."""
        texts = []
        for row in ids:
            tokens = [int(i) for i in row]
            if self.eos_id in tokens:
                tokens = tokens[: tokens.index(self.eos_id)]
            tokens = [i for i in tokens if i not in (self.pad_id, self.bos_id)]
            texts.append(self.tokenizer.decode(tokens, skip_special_tokens=True).strip())
        return texts

    def spec(self) -> dict[str, Any]:
        spec = {"max_length": self.settings.max_length, "vocab_size": self.vocab_size, "pad_id": self.pad_id,
                "bos_id": self.bos_id, "eos_id": self.eos_id, "tokenizer": self.settings.tokenizer}
        if self.settings.tokenizer == "hf":
            return spec | {"tokenizer_path": self.settings.tokenizer_path}
        return spec | {"tokenizer_json": self.tokenizer.to_str()}

    @classmethod
    def from_spec(cls, settings: "TextConfig", spec: dict[str, Any]) -> "TextTargets":
        from mmcli.tokenization import from_json, load_hf

        if spec.get("tokenizer", settings.tokenizer) == "hf":
            return cls(settings, load_hf(spec.get("tokenizer_path") or settings.tokenizer_path))
        return cls(settings, from_json(spec["tokenizer_json"], settings.max_length))

    def feature(self) -> Any:
        from datasets import Sequence, Value

        return Sequence(Value("int32"), length=self.settings.max_length)


def _text(value: Any) -> str:
    """A target cell as one line of text ('' when missing); numbers (an answer "3") become text."""
    if is_missing(value):
        return ""
    return " ".join(str(value).split())


class TextConfig(SupervisedSettings):
    type: Literal["text"] = "text"
    inputs: list[str] | None = Field(None, description="the inputs the decoder reads (default: every input)")
    max_length: int = Field(24, ge=3, description="target tokens, with the first and the end-of-text token")
    tokenizer: Literal["word", "wordpiece", "hf"] = Field(
        "word", description="word: a whole-word vocabulary of the train split's targets (reproducible); wordpiece: "
                            "subwords; hf: a local Hugging Face tokenizer (tokenizer_path)")
    vocab_size: int = Field(2000, ge=8, description="largest vocabulary trained (word/wordpiece)")
    lowercase: bool = True
    tokenizer_path: str | None = Field(None, description="tokenizer: hf: a local directory, or pkg:DIST")
    decoder: Any = Field(default_factory=lambda: {"type": "transformer"}, validate_default=True,
                         description="the decoder's settings, e.g. {type: transformer, layers: 2}")
    generation: GenerationSettings = Field(default_factory=GenerationSettings,
                                           description="the search predict and validation use (predict options "
                                                       "override it)")
    metrics: list[Literal["cider", "bleu", "chrf", "rouge_l", "vqa_accuracy"]] = Field(
        default_factory=lambda: list(TEXT_METRICS), min_length=1,
        description="what evaluation reports: BLEU-4, chrF, ROUGE-L, CIDEr-D, exact match after VQA answer "
                    "normalisation (vqa_accuracy); BLEU-4 is 0 for answers under four words")
    main_metric: Literal["cider", "bleu", "chrf", "rouge_l", "vqa_accuracy"] = Field(
        "cider", description="the metric that picks the best checkpoint when this task is monitored")
    prompt: str | None = Field(None, description="language-model decoders: the user turn a plain-text target answers "
                                                 "(e.g. '<image>\\nDescribe the clip.'), and what predict asks without "
                                                 "--prompt; a conversation column needs none")
    system: str | None = Field(None, description="language-model decoders: a system turn before each conversation")

    @field_validator("decoder", mode="before")
    @classmethod
    def _decoder(cls, value: Any) -> Any:
        return decoder_config(value)

    @model_validator(mode="after")
    def _check(self) -> "TextConfig":
        if self.tokenizer == "hf" and not self.tokenizer_path:
            raise ValueError("tokenizer 'hf' needs tokenizer_path (a local tokenizer directory)")
        if self.main_metric not in self.metrics:
            raise ValueError(f"main_metric: '{self.main_metric}' is not in metrics ({', '.join(self.metrics)})")
        chat = self.chat
        if not chat and (self.prompt or self.system):
            raise ValueError("prompt and system are for language-model decoders (decoder: {type: hf_causal_lm, ...})")
        if chat and not self.inputs:
            raise ValueError("inputs: name the inputs the language model sees (each gets a placeholder, <NAME>)")
        return self

    @property
    def chat(self) -> bool:
        """The decoder reads conversations (a language model) rather than plain texts."""
        return getattr(DECODERS.get(self.decoder.type), "codec", None) is not None

    def check(self, recipe: Any, name: str) -> None:
        if self.inputs is not None:
            check_inputs(self.inputs, recipe, f"tasks.{name}.inputs")

    def codec_settings(self) -> dict[str, Any]:
        codec = {"max_length", "tokenizer", "vocab_size", "lowercase", "tokenizer_path", "prompt", "system", "inputs"}
        decoder = self.decoder.model_dump(mode="json", include={"type", "path", "config", "vocabulary_columns",
                                                                 "vocabulary_texts"})
        return super().codec_settings() | self.model_dump(mode="json", include=codec) | {"decoder": decoder}

    def fit_columns(self) -> list[str]:
        """The columns whose train rows the target codec is fitted on."""
        return list(getattr(self.decoder, "vocabulary_columns", None) or [self.column])

    def target_codec(self, spec: dict | None = None) -> Any:
        if self.chat:
            return DECODERS.get(self.decoder.type).codec(self, spec)
        return TextTargets.from_spec(self, spec) if spec is not None else TextTargets(self)

    def row_errors(self, recipe: Any, table: Any) -> dict[int, str]:
        """Rows whose conversation shows an input's placeholder while the row has no such medium."""
        if not self.chat:
            return {}
        from mmcli.objectives.decoders.chat import parse_turns, placeholder

        errors: dict[int, str] = {}
        for name in self.inputs or []:
            column = recipe.inputs[name].column
            if column not in table.columns:
                continue
            token = placeholder(name)
            for row, (cell, medium) in enumerate(zip(table[self.column].tolist(), table[column].tolist())):
                if not is_missing(medium) or row in errors or not isinstance(cell, (str, list)):
                    continue
                try:
                    turns = parse_turns(cell) if isinstance(cell, list) or cell.lstrip().startswith("[") else []
                except BadValue:
                    continue  # the codec reports it
                for number, turn in enumerate(turns):
                    if token in turn["content"]:
                        errors[row] = (f"turn {number}: {token} but the row has no {name} (column '{column}' is "
                                       "empty); remove the placeholder or give the medium")
                        break
        return errors


@OBJECTIVES.register("text", TextConfig)
class TextTask(SupervisedObjective):
    """Spec: the codec's (tokenizer, ``max_length``, ``pad_id``/``bos_id``/``eos_id``). Targets: int32 ids
    ``[B, L]``; prediction: the generated ids after ``BOS`` (int64 ``[B, L']``, padded)."""

    exportable = False  # a search, not a fixed-shape function of the inputs
    reads_fusion = False  # the decoder cross-attends to the inputs' tokens

    def __init__(self, config: TextConfig, context: BuildContext) -> None:
        super().__init__(config, context)
        spec = context.target_spec or {}
        self.codec = config.target_codec(spec)
        self.generation = config.generation
        self.metrics = {name: TEXT_METRICS[name] for name in config.metrics}
        self.main_metric = config.main_metric
        inputs = tuple(config.inputs or context.inputs)
        self.decoder = DECODERS.build(config.decoder, context=DecoderContext(
            name=context.name, inputs=inputs, hidden_size=context.hidden_size, vocab_size=int(spec["vocab_size"]),
            pad_id=int(spec["pad_id"]), bos_id=int(spec["bos_id"]), eos_id=int(spec["eos_id"]),
            max_length=int(spec["max_length"]), spec=spec), codec=self.codec)

    def loss(self, rep: Any, batch: dict[str, Tensor]) -> Tensor:
        return self.decoder.loss(rep, batch, batch[self.name])

    def decoding_options(self) -> dict[str, Any]:
        return self.generation.model_dump()

    def settings(self, **decoding: Any) -> GenerationSettings:
        """The recipe's search settings with ``decoding`` laid over them (validated)."""
        return GenerationSettings(**{**self.generation.model_dump(), **decoding}) if decoding else self.generation

    def predict(self, rep: Any, batch: dict[str, Tensor] | None = None, streamer: Any = None,
                **decoding: Any) -> Tensor:
        """The generated answer's ids; ``streamer``: a ``transformers`` streamer fed the tokens as they come."""
        settings = self.settings(**decoding)
        target = batch.get(self.name) if batch is not None else None
        if self.codec_reads_prompts and target is None:
            raise DataError(f"task '{self.name}' answers a prompt, and none was given", hint="pass --prompt")
        extra = {"target": target, "streamer": streamer} if self.codec_reads_prompts else {}
        if not settings.do_sample:
            return self._ended(self.decoder.generate(rep, batch, settings, **extra))
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # reproducible draws that leave training's RNG alone
            torch.manual_seed(settings.seed)
            return self._ended(self.decoder.generate(rep, batch, settings, **extra))

    @property
    def codec_reads_prompts(self) -> bool:
        """The answer continues a prompt held in the batch (a language model's conversation)."""
        return isinstance(self.codec, ChatTargets)

    def _ended(self, ids: Tensor) -> Tensor:
        """Padding after each answer's first end token (beam search may fill finished answers otherwise)."""
        end = ids == self.codec.eos_id
        after = (end.long().cumsum(dim=1) - end.long()) > 0
        return ids.masked_fill(after, self.codec.pad_id)

    def collate(self, chunks: list[Tensor]) -> Tensor:
        """Answers of different lengths -> one ``[N, L]`` tensor padded with the pad id."""
        length = max(chunk.shape[1] for chunk in chunks)
        pad = self.codec.pad_id
        return torch.cat([torch.nn.functional.pad(chunk.long().cpu(), (0, length - chunk.shape[1]), value=pad)
                          for chunk in chunks])

    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        return [{"text": text} for text in self.codec.decode(prediction.tolist())]

    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list[str], list[str]]:
        """Generated and reference texts (the last answer of a conversation) of the labelled rows."""
        labelled = torch.as_tensor(self.codec.labelled(target.cpu().numpy()))
        return self.codec.decode(prediction[labelled].tolist()), self.codec.answers(target[labelled].cpu().numpy())
