"""Cross-modal attention blocks: shapes, masks, gradients, padding invariance, missing rows, inspection, model."""

from __future__ import annotations

import pytest
import torch

from mmcli.models.outputs import EncoderOutput
from mmcli.registries import ATTENTIONS
from tests.unit.model_fixtures import INPUTS
from tests.unit.model_fixtures import model as fixture_model

B, D = 3, 8
LENGTHS = {"text": 5, "image": 4, "audio": 3}  # different token counts per input
NAMES = list(LENGTHS)


def config(registry, name: str, **settings: object):
    return dict(zip(registry.names(), registry.configs()))[name](**settings)


def build(name: str, **settings: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return ATTENTIONS.build(config(ATTENTIONS, name, heads=2, **settings), input_names=NAMES, hidden_size=D)


def outputs(missing: dict[str, list[int]] | None = None, seed: int = 0, pad_value: float | None = None,
            requires_grad: bool = False) -> dict[str, EncoderOutput]:
    """Random encoder outputs: the last position of row 0 is padding everywhere; ``missing[name]`` rows have
    an all-False mask; padded tokens are zero, or ``pad_value`` noise to check they are ignored."""
    g = torch.Generator().manual_seed(seed)
    result = {}
    for name, length in LENGTHS.items():
        mask = torch.ones(B, length, dtype=torch.bool)
        mask[0, -1] = False
        for row in (missing or {}).get(name, []):
            mask[row] = False
        tokens = torch.randn(B, length, D, generator=g) * mask.unsqueeze(-1)
        if pad_value is not None:
            noise = torch.randn(B, length, D, generator=torch.Generator().manual_seed(99)) * pad_value
            tokens = torch.where(mask.unsqueeze(-1), tokens, noise)
        pooled = torch.randn(B, D, generator=g)
        if requires_grad:
            tokens.requires_grad_(True)
        result[name] = EncoderOutput(tokens, mask, pooled)
    return result


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_keys_shapes_and_masks_are_kept(name: str) -> None:
    block = build(name).eval()
    outs = outputs({"audio": [1]})
    new = block(outs)
    assert set(new) == set(outs)
    for key, out in outs.items():
        assert new[key].tokens.shape == out.tokens.shape and new[key].pooled.shape == out.pooled.shape
        assert torch.equal(new[key].mask, out.mask)
        assert (new[key].tokens[~out.mask] == 0).all()  # padded positions stay zero
        assert torch.isfinite(new[key].tokens).all() and torch.isfinite(new[key].pooled).all()
    # a missing input keeps its incoming pooled vector (the encoder's learned "missing" embedding)
    torch.testing.assert_close(new["audio"].pooled[1], outs["audio"].pooled[1])


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_gradients_reach_every_parameter(name: str) -> None:
    block = build(name).train()
    outs = outputs({"image": [2]}, requires_grad=True)
    new = block(outs)
    loss = sum((out.tokens * torch.randn_like(out.tokens)).sum() + out.pooled.sum() for out in new.values())
    loss.backward()
    for pname, p in block.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    for key, out in outs.items():
        assert torch.isfinite(out.tokens.grad).all() and out.tokens.grad.abs().sum() > 0, key


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_padded_token_values_do_not_matter(name: str) -> None:
    block = build(name).eval()
    with torch.no_grad():
        clean, noisy = block(outputs({"text": [2]})), block(outputs({"text": [2]}, pad_value=100.0))
    for key in clean:  # real positions and pooled (inputs a block passes through keep their padding as given)
        real = clean[key].mask.unsqueeze(-1)
        torch.testing.assert_close(clean[key].tokens * real, noisy[key].tokens * real)
        torch.testing.assert_close(clean[key].pooled, noisy[key].pooled)


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_missing_modality_row_is_finite_and_other_rows_unchanged(name: str) -> None:
    block = build(name).eval()
    with torch.no_grad():
        full = block(outputs())
        part = block(outputs({"image": [1]}))
        nothing = block(outputs({n: [1] for n in NAMES}))  # row 1 has no modality at all
    for result in (part, nothing):
        for key in result:
            assert torch.isfinite(result[key].tokens).all() and torch.isfinite(result[key].pooled).all()
            torch.testing.assert_close(result[key].tokens[[0, 2]], full[key].tokens[[0, 2]])
            torch.testing.assert_close(result[key].pooled[[0, 2]], full[key].pooled[[0, 2]])


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_missing_row_gives_finite_gradients(name: str) -> None:
    block = build(name).train()
    outs = outputs({n: [1] for n in NAMES}, requires_grad=True)
    sum(out.tokens.sum() + out.pooled.sum() for out in block(outs).values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)
    assert all(torch.isfinite(out.tokens.grad).all() for out in outs.values())


@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_keep_attention_exposes_weights(name: str) -> None:
    block = build(name, layers=2).eval()
    outs = outputs({"audio": [1]})
    with torch.no_grad():
        plain = block(outs)
        assert block.last_attention == {}  # off by default
        block.keep_attention = True
        kept = block(outs)
    assert block.last_attention
    for key, weights in block.last_attention.items():
        assert weights.shape[:3] == (2, B, 2), key  # [layers, B, heads, T_query, T_keys]
        assert torch.isfinite(weights).all()
        sums = weights.sum(dim=-1)
        assert (((sums - 1).abs() < 1e-5) | (sums == 0)).all(), key  # each query's weights sum to 1 (0: no keys)
    for key in plain:  # keeping the weights does not change the result
        torch.testing.assert_close(plain[key].tokens, kept[key].tokens)


def test_keep_attention_layouts() -> None:
    with torch.no_grad():
        single = build("single_stream")
        single.keep_attention = True
        single.eval()(outputs())
        total = sum(LENGTHS.values())
        assert {k: tuple(v.shape) for k, v in single.last_attention.items()} == \
            {n: (1, B, 2, t, total) for n, t in LENGTHS.items()}
        mult = build("mult")
        mult.keep_attention = True
        mult.eval()(outputs({"audio": [1]}))
        assert set(mult.last_attention) == {f"{t}<-{s}" for t in NAMES for s in NAMES if s != t}
        assert mult.last_attention["text<-image"].shape == (1, B, 2, 5, 4)
        assert (mult.last_attention["text<-audio"][:, 1] == 0).all()  # no audio keys in row 1
        co = build("co_attention")
        co.keep_attention = True
        co.eval()(outputs())
        assert co.pair == ["audio", "image"]  # default: first two names, sorted
        assert co.last_attention["audio"].shape == (1, B, 2, 3, 4)


def test_co_attention_passes_other_inputs_through() -> None:
    block = build("co_attention", pair=["text", "audio"]).eval()
    outs = outputs()
    with torch.no_grad():
        new = block(outs)
    assert new["image"] is outs["image"]
    assert not torch.allclose(new["text"].tokens, outs["text"].tokens)


def test_mult_source_missing_for_a_row_contributes_nothing() -> None:
    """Row 1 without audio: text's update there is the mean over image only, as if audio did not exist."""
    block = build("mult").eval()
    with torch.no_grad():
        new = block(outputs({"audio": [1]}))
        only_two = ATTENTIONS.build(config(ATTENTIONS, "mult", heads=2), input_names=["text", "image"], hidden_size=D)
        index = {pair: i for i, pair in enumerate(block.pairs)}
        only_two.blocks[only_two.pairs.index(("text", "image"))].load_state_dict(
            block.blocks[index[("text", "image")]].state_dict())
        only_two.blocks[only_two.pairs.index(("image", "text"))].load_state_dict(
            block.blocks[index[("image", "text")]].state_dict())
        outs = outputs({"audio": [1]})
        reference = only_two.eval()({k: outs[k] for k in ("text", "image")})
    torch.testing.assert_close(new["text"].tokens[1], reference["text"].tokens[1])


# --- composed with the model (tests/unit/model_fixtures.py's small recipes) ---
@pytest.mark.parametrize("name", ATTENTIONS.names())
def test_with_build_model_forward_and_backward(name: str) -> None:
    model = fixture_model("gated", ["text", "image"], tasks={"label": {"type": "classification", "column": "label"}},
                          hidden_size=D, model={"attention": {"type": name, "heads": 2}}).train()
    attention = model.backbone.attention
    assert attention is not None and any(k.startswith("backbone.attention.") for k in model.state_dict())
    text, image = INPUTS["text"], INPUTS["image"]
    text_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [False] * 6])  # row 2: no text
    batch = {text: torch.randint(1, 20, (B, 6)) * text_mask, f"{text}_mask": text_mask,
             image: torch.randint(0, 256, (B, 3, 8, 8), dtype=torch.uint8),
             f"{image}_mask": torch.tensor([[True], [False], [True]]),  # row 1: no image
             "label": torch.tensor([0, 1, -100])}
    batch[image][1] = 0
    total, _ = model(batch)
    assert torch.isfinite(total)
    total.backward()
    for pname, p in attention.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
