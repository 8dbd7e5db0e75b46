"""Encoders: shapes, gradients, padding invariance and the learned missing vector, for every registered encoder."""

from __future__ import annotations

from typing import Annotated, Union

import pytest
import torch
from pydantic import Field, TypeAdapter

from mmcli.models.outputs import EncoderOutput
from mmcli.registries import DEFAULT_ENCODER, ENCODERS, MODALITIES

B, D = 4, 16
# encoders that need a pretrained model (a directory) to exist: covered by test_encoders_hf.py
NEEDS_MODEL = {"hf"}
# extra settings worth covering; every registered encoder is also tested with its defaults
VARIANTS = {("text", "transformer"): [{"pooling": "cls"}],
            ("video", "frames"): [{"temporal": "attention"}, {"temporal": "transformer"}],
            ("image", "cnn"): [{"channels": [4, 8]}], ("image", "vit"): [{"pooling": "mean"}],
            ("audio", "transformer"): [{"pooling": "cls"}]}
CASES = [(m, n, {}) for m in MODALITIES for n in ENCODERS[m].names() if n not in NEEDS_MODEL]
CASES += [(m, n, extra) for (m, n), extras in VARIANTS.items() for extra in extras]
IDS = ["-".join([m, n, *(f"{k}={v}" for k, v in extra.items())]) for m, n, extra in CASES]


def make_input(modality: str, missing: int | None = 3, channels: int = 3,
               seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """A tiny spec + batch in the loader's format; row ``missing`` has no data (mask all False, zeros)."""
    g = torch.Generator().manual_seed(seed)
    if modality == "text":
        spec = {"vocab_size": 20, "max_length": 6, "pad_id": 0}
        mask = torch.arange(6) < torch.tensor([6, 4, 2, 1]).unsqueeze(1)
        x = torch.randint(1, 20, (B, 6), generator=g) * mask
    elif modality == "image":
        spec = {"channels": channels, "size": 8, "mean": [0.5] * channels, "std": [0.25] * channels}
        x, mask = torch.randint(0, 256, (B, channels, 8, 8), generator=g, dtype=torch.uint8), torch.ones(B, 1, dtype=torch.bool)
    elif modality == "audio":
        spec = {"n_features": 4, "frames": 10, "mean": 0.5, "std": 2.0}
        mask = torch.arange(10) < torch.tensor([10, 7, 3, 1]).unsqueeze(1)
        x = (torch.randn(B, 4, 10, generator=g) * mask.unsqueeze(1)).half()
    else:
        spec = {"channels": channels, "size": 8, "num_frames": 3, "mean": [0.5] * channels, "std": [0.25] * channels}
        mask = torch.arange(3) < torch.tensor([3, 2, 1, 1]).unsqueeze(1)
        x = torch.randint(0, 256, (B, 3, channels, 8, 8), generator=g, dtype=torch.uint8)
        x = x * mask.view(B, 3, 1, 1, 1).to(torch.uint8)
    if missing is not None:
        x, mask = x.clone(), mask.clone()
        x[missing], mask[missing] = 0, False
    return spec, x, mask


def scramble_padding(modality: str, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace every value the mask marks as not real with other random values."""
    if modality == "text":
        return torch.where(mask, x, torch.randint_like(x, 1, 20))
    if modality == "audio":
        return torch.where(mask.unsqueeze(1), x, torch.randn_like(x.float()).half() * 5)
    noise = torch.randint_like(x, 0, 256)
    keep = mask.view(*mask.shape, *([1] * (x.dim() - mask.dim())))
    return torch.where(keep, x, noise)


def build(modality: str, name: str, extra: dict, spec: dict) -> torch.nn.Module:
    config = dict(zip(ENCODERS[modality].names(), ENCODERS[modality].configs()))[name](**extra)
    torch.manual_seed(0)
    return ENCODERS[modality].build(config, spec=spec, hidden_size=D)


@pytest.mark.parametrize("modality,name,extra", CASES, ids=IDS)
def test_shapes_and_missing_row(modality: str, name: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, name, extra, spec).eval()
    out = encoder(x, mask)
    assert isinstance(out, EncoderOutput)
    assert out.tokens.dim() == 3 and out.tokens.shape[0] == B and out.tokens.shape[2] == D
    assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == torch.bool
    assert out.pooled.shape == (B, D) and torch.isfinite(out.pooled).all()
    assert out.present.tolist() == [True, True, True, False]
    assert (out.tokens[~out.mask] == 0).all()  # padded and missing positions are zeroed
    torch.testing.assert_close(out.pooled[3], encoder.missing.detach())


@pytest.mark.parametrize("modality,name,extra", CASES, ids=IDS)
def test_all_rows_missing_is_finite(modality: str, name: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, name, extra, spec).train()
    out = encoder(torch.zeros_like(x), torch.zeros_like(mask))
    assert not out.mask.any()
    torch.testing.assert_close(out.pooled, encoder.missing.detach().expand(B, D))


@pytest.mark.parametrize("modality,name,extra", CASES, ids=IDS)
def test_gradients_reach_every_parameter(modality: str, name: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)  # rows 0-2 present, row 3 missing: the missing vector is used too
    encoder = build(modality, name, extra, spec).train()
    if not list(encoder.parameters()):
        pytest.skip("no parameters: the input goes raw to a model that reads it itself")
    out = encoder(x, mask)
    # random projections: a plain sum after LayerNorm has zero gradient
    (out.pooled * torch.randn(B, D)).sum().add_((out.tokens * torch.randn_like(out.tokens)).sum()).backward()
    for pname, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("modality,name,extra", CASES, ids=IDS)
def test_padding_does_not_change_outputs(modality: str, name: str, extra: dict) -> None:
    spec, x, mask = make_input(modality)
    encoder = build(modality, name, extra, spec).eval()
    with torch.no_grad():
        a = encoder(x, mask)
        b = encoder(scramble_padding(modality, x, mask), mask)
    torch.testing.assert_close(a.pooled, b.pooled)
    torch.testing.assert_close(a.tokens, b.tokens)


@pytest.mark.parametrize("modality", ["image", "video"])
def test_single_channel_pixels(modality: str) -> None:
    spec, x, mask = make_input(modality, channels=1)
    encoder = build(modality, DEFAULT_ENCODER[modality], {}, spec)
    assert encoder(x, mask).pooled.shape == (B, D)


def test_audio_token_is_real_if_any_frame_is() -> None:
    spec, x, mask = make_input("audio", missing=None)  # lengths 10, 7, 3, 1 over two 2x poolings
    out = build("audio", "cnn", {}, spec)(x, mask)
    assert out.mask.sum(dim=1).tolist() == [3, 2, 1, 1]


@pytest.mark.parametrize("modality", MODALITIES)
def test_configs_form_a_tagged_union(modality: str) -> None:
    configs = ENCODERS[modality].configs()
    union = configs[0] if len(configs) == 1 else Annotated[Union[tuple(configs)], Field(discriminator="type")]
    for name in ENCODERS[modality].names():
        settings = {"type": name, **({"model": "some/model"} if name in NEEDS_MODEL else {})}
        assert TypeAdapter(union).validate_python(settings).type == name
