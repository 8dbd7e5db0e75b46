"""Fusions: shapes, gradients and handling of missing modalities, for every registered fusion."""

from __future__ import annotations

import pytest
import torch

from mmcli.models.outputs import EncoderOutput
from mmcli.registries import FUSIONS

B, D = 4, 16
NAMES = ["text", "image", "audio"]
# fusions that feed a missing modality's learned "missing" vector in by design (not excluded)
USES_MISSING_VECTOR = {"concat"}


def build(name: str) -> torch.nn.Module:
    config = dict(zip(FUSIONS.names(), FUSIONS.configs()))[name]()
    torch.manual_seed(0)
    return FUSIONS.build(config, input_names=NAMES, hidden_size=D)


def outputs(present: dict[str, list[bool]] | None = None, seed: int = 0) -> dict[str, EncoderOutput]:
    """Random encoder outputs; ``present[name][row]`` False gives that row an all-False mask."""
    g = torch.Generator().manual_seed(seed)
    result = {}
    for name in NAMES:
        rows = torch.tensor((present or {}).get(name, [True] * B))
        mask = rows.unsqueeze(1).expand(B, 3).clone()
        tokens = torch.randn(B, 3, D, generator=g) * mask.unsqueeze(-1)
        result[name] = EncoderOutput(tokens, mask, torch.randn(B, D, generator=g, requires_grad=True))
    return result


@pytest.mark.parametrize("name", FUSIONS.names())
def test_shape(name: str) -> None:
    fused = build(name)(outputs()).fused
    assert fused.shape == (B, D) and torch.isfinite(fused).all()


@pytest.mark.parametrize("name", FUSIONS.names())
def test_input_order_does_not_matter(name: str) -> None:
    fusion, outs = build(name).eval(), outputs()
    reordered = dict(reversed(list(outs.items())))
    torch.testing.assert_close(fusion(outs).fused, fusion(reordered).fused)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_gradients_reach_every_parameter_and_input(name: str) -> None:
    fusion = build(name).train()
    outs = outputs({"audio": [True, True, True, False]})
    (fusion(outs).fused * torch.randn(B, D)).sum().backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    for name_, out in outs.items():
        assert out.pooled.grad[:3].abs().sum() > 0, name_


@pytest.mark.parametrize("name", sorted(set(FUSIONS.names()) - USES_MISSING_VECTOR))
def test_missing_modality_is_excluded(name: str) -> None:
    fusion = build(name).eval()
    outs = outputs({"image": [True, False, True, False]})
    changed = dict(outs)
    # a perturbation that no normalisation cancels (a constant shift vanishes under LayerNorm)
    shift = torch.linspace(-3.0, 3.0, D) * torch.tensor([1.0, -1.0]).repeat(D // 2)
    changed["image"] = EncoderOutput(outs["image"].tokens, outs["image"].mask, outs["image"].pooled + shift)
    with torch.no_grad():
        a, b = fusion(outs).fused, fusion(changed).fused
    torch.testing.assert_close(a[[1, 3]], b[[1, 3]])  # rows without an image ignore its vector
    assert (a[[0, 2]] - b[[0, 2]]).abs().max() > 1e-2  # rows with an image use it (far above rounding noise)


@pytest.mark.parametrize("name", FUSIONS.names())
def test_row_with_no_modality_is_finite(name: str) -> None:
    fusion = build(name).train()
    fused = fusion(outputs({n: [True, True, False, False] for n in NAMES})).fused
    assert torch.isfinite(fused).all()
    fused.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in fusion.parameters() if p.grad is not None)


def test_gated_single_modality_gets_the_whole_gate() -> None:
    fusion = build("gated").eval()
    outs = outputs({"audio": [False] * B, "image": [False] * B})
    with torch.no_grad():
        expected = torch.tanh(fusion.transforms[fusion.names.index("text")](outs["text"].pooled))
        torch.testing.assert_close(fusion(outs).fused, expected)
        none = outputs({n: [False] * B for n in NAMES})
        assert (fusion(none).fused == 0).all()
