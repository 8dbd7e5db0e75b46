"""Tokenizers trained on a train split, or loaded from a local Hugging Face folder: what the text
processor (inputs) and the text target codec (captions, answers) share. Torch-free.

Special tokens are the same everywhere: ``[PAD]`` is id 0, ``[CLS]`` opens a sequence (a decoder's
first token) and ``[SEP]`` ends it (a decoder's end-of-sequence)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmcli.errors import RecipeError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] must be id 0


def train_tokenizer(texts: list[str], kind: str, vocab_size: int, min_frequency: int, lowercase: bool,
                    max_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` trained on ``texts``: ``word`` (whole words, ties ordered by token, so
    the same texts always give the same ids) or ``wordpiece`` (subwords; the trainer breaks count ties
    in hash order, huggingface/tokenizers#1794)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        trainer: Any = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                 special_tokens=SPECIAL_TOKENS, show_progress=False)
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return with_template(tokenizer, max_length)


def with_template(tokenizer: Any, max_length: int) -> Any:
    """[CLS] ... [SEP], truncated and padded to max_length (also stored in the tokenizer JSON)."""
    from tokenizers import processors

    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tokenizer


def from_json(text: str, max_length: int) -> Any:
    """A trained tokenizer saved with ``to_str()``, set up for ``max_length`` again."""
    from tokenizers import Tokenizer

    return with_template(Tokenizer.from_str(text), max_length)


def load_hf(name: str) -> Any:
    """A Hugging Face tokenizer from a local folder or ``pkg:DIST`` (never the network)."""
    from mmcli.pretrained import resolve_model_path

    path = resolve_model_path(name)  # 'pkg:DIST' -> the package's model directory (specs keep 'pkg:DIST')
    if not Path(path).is_dir():
        raise RecipeError(f"tokenizer_path is not a directory: {path}", hint="point it at a saved Hugging Face tokenizer")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise RecipeError(f"cannot load the tokenizer in {path}: {' '.join(str(err).split())[:200]}") from err
