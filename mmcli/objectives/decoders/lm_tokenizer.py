"""The tokenizer of a language-model decoder: a pretrained model folder's own (with the placeholders added
as special tokens, and a ChatML chat template when it has none), or one trained on the train split's
conversations for a language model built from a config. Torch-free; ``transformers`` is imported lazily."""

from __future__ import annotations

from typing import Any

from mmcli.errors import RecipeError
from mmcli.objectives.decoders.chat import CHAT_MARKERS, CHAT_TEMPLATE

SPECIALS = ["[PAD]", "[UNK]", *CHAT_MARKERS]


def _with_placeholders(tokenizer: Any, placeholders: list[str]) -> Any:
    """Placeholders (and the ChatML markers when the tokenizer has no chat template) as special tokens,
    always added in the same order, so a run's ids are the same every time the tokenizer is loaded."""
    extra = [token for token in placeholders if token not in tokenizer.get_vocab()]
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
        extra = [token for token in CHAT_MARKERS if token not in tokenizer.get_vocab()] + extra
        if "<|im_end|>" in extra or tokenizer.eos_token is None:
            tokenizer.eos_token = "<|im_end|>"
    if extra:
        tokenizer.add_special_tokens({"additional_special_tokens": extra}, replace_extra_special_tokens=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models often have none; padding is masked anyway
    return tokenizer


def pretrained_tokenizer(path: str, placeholders: list[str], field: str) -> Any:
    """The tokenizer of a local model folder (or ``pkg:DIST``), never from the network."""
    from pathlib import Path

    from mmcli.pretrained import gguf_file, resolve_model_path

    folder = resolve_model_path(path)
    if not Path(folder).is_dir():
        raise RecipeError(f"{field}: {path} is not a model folder", hint="download the model and give its local folder")
    from transformers import AutoTokenizer

    quantised = gguf_file(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                  **({"gguf_file": quantised} if quantised else {}))
    except ImportError as error:  # a GGUF file needs the gguf package; other tokenizers their own packages
        raise RecipeError(f"{field}: {path}: {' '.join(str(error).split())[:160]}",
                          hint="pip install gguf" if quantised else "install the package it names") from None
    except (OSError, ValueError) as error:
        raise RecipeError(f"{field}: cannot load a tokenizer from {path}: {' '.join(str(error).split())[:160]}") from None
    return _with_placeholders(tokenizer, placeholders)


def trained_tokenizer(texts: list[str], placeholders: list[str], vocab_size: int = 4000) -> Any:
    """A whole-word tokenizer of ``texts`` (ties ordered by token: reproducible) with a ChatML template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=vocab_size, show_progress=False,
                                                                   special_tokens=SPECIALS + placeholders))
    return from_trained_json(tokenizer.to_str(), placeholders, PreTrainedTokenizerFast)


def from_trained_json(text: str, placeholders: list[str], cls: Any = None) -> Any:
    """A trained tokenizer saved in a run's spec, as the ``transformers`` tokenizer it was."""
    from tokenizers import Tokenizer

    if cls is None:
        from transformers import PreTrainedTokenizerFast as cls  # noqa: N813 - the class, imported lazily
    tokenizer = cls(tokenizer_object=Tokenizer.from_str(text), pad_token="[PAD]", unk_token="[UNK]",
                    bos_token="<|im_start|>", eos_token="<|im_end|>", additional_special_tokens=list(placeholders))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
