from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmcli.data.processors.base import MediaError
from mmcli.data.processors.text import TextConfig, TextProcessor
from mmcli.errors import RecipeError
from mmcli.registries import PROCESSORS

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


@pytest.mark.parametrize("kind", ["word", "wordpiece"])
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
        "proc = TextProcessor(TextConfig(max_length=8, vocab_size=200), 't')\n"
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
    proc = _fitted()
    ids = proc.transform({"txt": ["the zebra"]})["txt"][0]
    assert ids[2] == proc.tokenizer.token_to_id("[UNK]") and ids[1] == proc.tokenizer.token_to_id("the")


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
