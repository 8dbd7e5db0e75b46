from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmcli.data.processors.base import MediaError
from mmcli.data.processors.text import TextConfig, TextProcessor
from mmcli.errors import RecipeError
from mmcli.registries import PROCESSORS
from mmcli.tokenization import SPECIAL_TOKENS

TRAIN = [
    "The quick brown fox jumps over the lazy dog",
    "A lazy cat sleeps all day long",
    "Dogs and cats are friendly animals",
    "The weather is sunny and warm today",
] * 3


def _fitted(**kwargs: object) -> TextProcessor:
    proc = TextProcessor(TextConfig(max_length=8, vocab_size=200, **kwargs), "txt")
    decoded = [proc.decode(t, Path("."))["txt"] for t in TRAIN]
    proc.fit({"txt": decoded + [""]})  # a missing row in train must be ignored
    return proc


def test_registered() -> None:
    assert PROCESSORS.get("text") is TextProcessor


def test_decode_cleans_and_rejects_empty() -> None:
    proc = TextProcessor(TextConfig(), "txt")
    assert proc.decode("  Hello\n\tWORLD  ", Path("."))["txt"] == "hello world"
    assert TextProcessor(TextConfig(lowercase=False), "t").decode("Hi  There", Path("."))["t"] == "Hi There"
    for bad in ["", "   \n", None, float("nan")]:
        with pytest.raises(MediaError, match="empty text"):
            proc.decode(bad, Path("."))
    with pytest.raises(MediaError, match="text is not a string: list"):
        proc.decode(["a"], Path("."))
    assert proc.decode(42, Path("."))["txt"] == "42" and proc.decode(2.5, Path("."))["txt"] == "2.5"
    assert proc.missing() == {"txt": ""}


@pytest.mark.parametrize("kind", ["subword", "word", "wordpiece"])
def test_tokenise_shapes_and_special_tokens(kind: str) -> None:
    proc = _fitted(tokenizer=kind)
    tok = proc.tokenizer
    assert [tok.token_to_id(t) for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]] == [0, 1, 2, 3, 4]
    out = proc.transform({"txt": ["the lazy dog", "the quick brown fox jumps over the lazy dog again", "", None]})
    ids, mask = out["txt"], out["txt_mask"]
    assert ids.shape == (4, 8) and ids.dtype == np.int32 and mask.dtype == bool
    assert ids[0, 0] == 2 and ids[0, 4] == 3 and mask[0].tolist() == [True] * 5 + [False] * 3
    assert (ids[0, 5:] == 0).all()
    assert mask[1].all() and ids[1, -1] == 3  # truncated, still ends with [SEP]
    assert not mask[2].any() and not ids[2].any() and not mask[3].any()  # missing rows: all pad
    assert "[UNK]" not in tok.decode(ids[0].tolist())


def test_word_vocabulary_is_reproducible_across_processes() -> None:
    # Many equal counts: a trainer that breaks ties in hash order (as WordPiece's does) gives
    # different ids from one process to the next; a fresh interpreter has a fresh hash seed.
    script = (
        "from pathlib import Path\n"
        "from mmcli.data.processors.text import TextConfig, TextProcessor\n"
        "proc = TextProcessor(TextConfig(max_length=8, vocab_size=200, tokenizer='word'), 't')\n"
        "texts = [' '.join(f'w{i}{j}' for j in range(6)) for i in range(30)]\n"
        "proc.fit({'t': texts})\n"
        "print(proc.spec()['tokenizer_json'])\n"
    )
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
            for _ in range(3)}
    assert len(runs) == 1
    vocab = json.loads(runs.pop())["model"]["vocab"]
    assert len(vocab) == 5 + 180 and vocab["w00"] == 5  # all ties: ordered by token after the specials


def test_word_tokenizer_maps_unseen_words_to_unk() -> None:
    proc = _fitted(tokenizer="word")
    ids = proc.transform({"txt": ["the zebra"]})["txt"][0]
    assert ids[2] == proc.tokenizer.token_to_id("[UNK]") and ids[1] == proc.tokenizer.token_to_id("the")


# held out: none of these words is in TRAIN (a pangram: every letter is)
UNSEEN_NAMES = ["bartholomew", "zyx", "quetzalcoatl", "ann", "anna", "annas", "hannah", "han nah", "otto", "toto",
                "oslo", "solo", "dogma", "foxtrot", "jean luc", "van der berg", "zebra", "zebras", "arbez", "xavier",
                "kowalczyk", "nguyen", "obrien", "mcdonald", "macdonald", "lazydog", "the lazy", "quickly"]


def test_subword_is_the_default_and_the_same_in_fresh_processes() -> None:
    assert TextConfig().tokenizer == "subword"
    script = (
        "from mmcli.data.processors.text import TextConfig, TextProcessor\n"
        "proc = TextProcessor(TextConfig(max_length=8, vocab_size=120), 't')\n"
        "texts = [' '.join(f'w{i}{j}x{i}' for j in range(6)) for i in range(30)] + ['aa bb ab ba'] * 3\n"
        "proc.fit({'t': texts})\n"
        "print(proc.spec()['tokenizer_json'])\n"
    )
    runs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(runs) == 1, "a fresh interpreter (another hash seed) learns the same pieces and ids"
    vocab = json.loads(runs.pop())["model"]["vocab"]
    assert len(vocab) == 120 and [vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]


def test_subword_splits_unseen_names_into_known_pieces_and_never_merges_two() -> None:
    proc = TextProcessor(TextConfig(max_length=24, vocab_size=120), "txt")
    proc.fit({"txt": [proc.decode(t, Path("."))["txt"] for t in TRAIN]})
    tok, unk = proc.tokenizer, proc.tokenizer.token_to_id("[UNK]")
    assert {"the", "lazy", "dog"} <= set(tok.get_vocab()), "frequent words stay whole"
    encoded = {name: proc.transform({"txt": [name]})["txt"][0].tolist() for name in UNSEEN_NAMES}
    assert not [name for name, ids in encoded.items() if unk in ids]
    assert len({tuple(ids) for ids in encoded.values()}) == len(UNSEEN_NAMES), "distinct names, distinct ids"
    for name, ids in encoded.items():  # the pieces spell the name back
        assert tok.decode([i for i in ids if i >= len(SPECIAL_TOKENS)]) == name
    prompts = proc.transform({"txt": [f"a picture of a {name}" for name in ("zebra", "xavier", "hannah", "otto",
                                                                             "kowalczyk", "zebras", "oslo", "solo")]})
    assert len({tuple(row) for row in prompts["txt"].tolist()}) == 8, "zero-shot prompts stay apart"
    ids = proc.transform({"txt": ["the ωmega dog's"]})["txt"][0].tolist()  # ω and ' never seen
    assert ids.count(unk) == 2 and ids[1] == tok.token_to_id("the") and ids[3] == tok.token_to_id("dog"), \
        "only a word with an unseen character is [UNK]"


def test_subword_vocabulary_keeps_the_letters_then_the_most_frequent_merges() -> None:
    from mmcli.tokenization import subword_vocabulary

    vocab = subword_vocabulary({"low": 5, "lower": 2, "newest": 6, "widest": 3}, vocab_size=40)
    letters = sorted(set("lowernewestwidest"))
    assert all(letter in vocab and "##" + letter in vocab for letter in letters)
    learnt = sorted((piece for piece in vocab if vocab[piece] >= 5 + 2 * len(letters)), key=vocab.get)
    # by hand: e+s and s+t count 9 (a tie, broken by text: e+s), then es+t; o+w and l+o 7 (o+w), then l+ow;
    # e+w, n+e and w+est 6 (e+w), ...; with room to spare every word ends up whole
    assert learnt == ["##es", "##est", "##ow", "low", "##ew", "##ewest", "newest", "##dest", "##idest", "widest",
                      "##er", "lower"]
    assert len(subword_vocabulary({"low": 5}, vocab_size=8)) == 8, "vocab_size caps the pieces"
    rare = subword_vocabulary({"ab": 1, "cd": 3}, vocab_size=40, min_frequency=2)
    assert "cd" in rare and "ab" not in rare, "merges stop below min_frequency"


def test_spec_round_trip() -> None:
    proc = _fitted()
    spec = json.loads(json.dumps(proc.spec()))
    assert spec["pad_id"] == 0 and spec["max_length"] == 8
    assert 5 < spec["vocab_size"] <= 200
    other = TextProcessor(TextConfig(), "txt")
    other.load_spec(spec)
    texts = {"txt": ["a friendly zebra", "the sunny day", ""]}
    for key in ("txt", "txt_mask"):
        np.testing.assert_array_equal(other.transform(texts)[key], proc.transform(texts)[key])
    assert other.spec() == spec


def test_dataset_pipeline() -> None:
    """decode -> string column -> fit on a datasets Column -> batched map(transform) -> features()."""
    import datasets

    proc = TextProcessor(TextConfig(max_length=8, vocab_size=200), "txt")
    rows = [proc.decode(t, Path(".")) for t in TRAIN] + [proc.missing()]
    ds = datasets.Dataset.from_list(rows, features=datasets.Features(proc.decoded_features()))
    proc.fit({"txt": ds.with_format("numpy")["txt"]})
    out = ds.map(proc.transform, batched=True, remove_columns=["txt"], features=datasets.Features(proc.features()))
    batch = out.with_format("numpy", dtype=None)[:]
    assert batch["txt"].dtype == np.int32 and batch["txt"].shape == (len(rows), 8)
    assert batch["txt_mask"][0].any() and not batch["txt_mask"][-1].any()


def test_fit_without_text_fails() -> None:
    from mmcli.errors import DataError

    with pytest.raises(DataError):
        TextProcessor(TextConfig(), "txt").fit({"txt": ["", None]})
    with pytest.raises(RuntimeError):
        TextProcessor(TextConfig(), "txt").transform({"txt": ["x"]})


def test_hf_tokenizer(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    wordpiece = _fitted().tokenizer
    wordpiece.no_padding()
    wordpiece.no_truncation()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]"
    )
    fast.save_pretrained(tmp_path / "tok")
    proc = TextProcessor(TextConfig(tokenizer="hf", tokenizer_path=str(tmp_path / "tok"), max_length=6), "t")
    proc.fit({"t": []})
    out = proc.transform({"t": ["the lazy dog", ""]})
    assert out["t"].shape == (2, 6) and out["t"][0, 0] == 2 and out["t_mask"][0].sum() == 5
    spec = json.loads(json.dumps(proc.spec()))
    assert spec["tokenizer_path"] == str(tmp_path / "tok") and spec["pad_id"] == 0
    other = TextProcessor(TextConfig(), "t")
    other.load_spec(spec)
    np.testing.assert_array_equal(other.transform({"t": ["the lazy dog"]})["t"], out["t"][:1])


def test_hf_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tokenizer_path"):
        TextConfig(tokenizer="hf")
    proc = TextProcessor(TextConfig(tokenizer="hf", tokenizer_path=str(tmp_path / "missing")), "t")
    with pytest.raises(RecipeError, match="not a directory"):
        proc.fit({"t": ["x"]})
