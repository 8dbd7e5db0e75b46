"""Tokenizers trained on a train split, or loaded from a local Hugging Face folder: what the text
processor (inputs) and the text target codec (captions, answers) share. Torch-free.

Special tokens are the same everywhere: ``[PAD]`` is id 0, ``[CLS]`` opens a sequence (a decoder's
first token) and ``[SEP]`` ends it (a decoder's end-of-sequence)."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from itertools import pairwise
from pathlib import Path
from typing import Any

from mmcli.errors import RecipeError

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # [PAD] must be id 0
CONTINUATION = "##"  # WordPiece's mark of a piece that continues a word


def train_tokenizer(texts: list[str], kind: str, vocab_size: int, min_frequency: int, lowercase: bool,
                    max_length: int) -> Any:
    """A ``tokenizers.Tokenizer`` trained on ``texts``: ``subword`` (WordPiece pieces learnt by
    :func:`subword_vocabulary`: deterministic, and a word never seen splits into known pieces), ``word``
    (whole words, ties ordered by token, so the same texts always give the same ids; an unseen word is
    ``[UNK]``) or ``wordpiece`` (the ``tokenizers`` trainer, which breaks count ties in hash order,
    huggingface/tokenizers#1794)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if kind == "subword":
        words: Counter[str] = Counter()
        for text in texts:  # the words exactly as encoding will see them
            words.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
        vocab = subword_vocabulary(words, vocab_size, min_frequency)
        tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=CONTINUATION))
        tokenizer.decoder = decoders.WordPiece()
        tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
        return with_template(tokenizer, max_length)
    if kind == "word":
        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        trainer: Any = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                                 special_tokens=SPECIAL_TOKENS, show_progress=False)
    else:
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                            special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return with_template(tokenizer, max_length)


def subword_vocabulary(words: dict[str, int], vocab_size: int, min_frequency: int = 1) -> dict[str, int]:
    """A WordPiece vocabulary (piece -> id) of at most ``vocab_size`` pieces from word counts.

    The special tokens, then every character seen, alone and as a continuation (``##c``), so a new
    word made of seen characters always splits into known pieces, never ``[UNK]``; then byte-pair
    merges (Sennrich et al., 2016) of the most frequent adjacent pieces, in order, while their count
    is at least ``min_frequency``: frequent words end up whole, rare ones in frequent parts. Every tie
    is broken by the pieces' text, never by hash order, so the same counts always give the same ids.
    """
    letters: Counter[str] = Counter()
    for word, count in words.items():
        for letter in word:
            letters[letter] += count
    pieces = list(SPECIAL_TOKENS)
    for letter in sorted(letters, key=lambda letter: (-letters[letter], letter)):
        pieces += [letter, CONTINUATION + letter]
    pieces = pieces[:vocab_size]
    known = set(pieces)
    spelled = sorted(words)
    symbols = [[word[0], *(CONTINUATION + letter for letter in word[1:])] for word in spelled]
    counts = [words[word] for word in spelled]
    pair_counts: Counter[tuple[str, str]] = Counter()
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)  # words that may hold a pair (a superset)
    for index, parts in enumerate(symbols):
        for pair in pairwise(parts):
            pair_counts[pair] += counts[index]
            holders[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    while heap and len(pieces) < vocab_size:
        negative, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -negative:
            continue  # a stale entry: the pair's count changed since it was pushed
        if -negative < max(min_frequency, 1):
            break
        merged = pair[0] + pair[1].removeprefix(CONTINUATION)
        if merged not in known:
            pieces.append(merged)
            known.add(merged)
        changed: set[tuple[str, str]] = set()
        for index in sorted(holders.pop(pair)):
            old, new = symbols[index], _merge(symbols[index], pair, merged)
            for gone in pairwise(old):
                pair_counts[gone] -= counts[index]
                changed.add(gone)
            for came in pairwise(new):
                pair_counts[came] += counts[index]
                holders[came].add(index)
                changed.add(came)
            symbols[index] = new
        for other in sorted(changed):
            if pair_counts[other] > 0:
                heapq.heappush(heap, (-pair_counts[other], other))
            else:
                del pair_counts[other]
    return {piece: index for index, piece in enumerate(pieces)}


def _merge(parts: list[str], pair: tuple[str, str], merged: str) -> list[str]:
    out: list[str] = []
    index = 0
    while index < len(parts):
        if index + 1 < len(parts) and (parts[index], parts[index + 1]) == pair:
            out.append(merged)
            index += 2
        else:
            out.append(parts[index])
            index += 1
    return out


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
