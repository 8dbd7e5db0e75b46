"""Encoders built from recipe sections are the standard models: against hand-written PyTorch modules,
the same parameter count and, with the same weights, the same outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcli.models.encoders.audio import AudioCnnConfig, AudioCnnEncoder
from mmcli.models.encoders.image import ImageCnnConfig, ImageCnnEncoder
from mmcli.models.fusion.concat import ConcatFusion, ConcatFusionConfig
from mmcli.models.outputs import EncoderOutput

IMAGE_SPEC = {"channels": 1, "size": 32, "mean": [0.5], "std": [0.25]}
AUDIO_SPEC = {"n_features": 64, "frames": 40, "mean": 0.0, "std": 1.0}


def _own_parameters(encoder: nn.Module) -> list[nn.Parameter]:
    """The encoder's parameters but its learned "missing" vector (a reference has no missing inputs)."""
    return [p for name, p in encoder.named_parameters() if name != "missing"]


def _copy(reference: nn.Module, encoder: nn.Module) -> None:
    mine = _own_parameters(encoder)
    theirs = list(reference.parameters())
    assert [p.shape for p in mine] == [p.shape for p in theirs]
    with torch.no_grad():
        for target, source in zip(mine, theirs):
            target.copy_(source)
    buffers = [b for name, b in encoder.named_buffers() if "running" in name]
    for target, source in zip(buffers, [b for name, b in reference.named_buffers() if "running" in name]):
        target.copy_(source)


def _images(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = torch.randint(0, 256, (n, 1, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    return pixels, (pixels.float() / 255 - 0.5) / 0.25


def test_stacked_cnn_with_flatten_and_fc_is_the_hand_written_one():
    reference = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU())
    block = {"bias": True, "norm": "none", "activation": "relu"}
    config = ImageCnnConfig(blocks=[{"channels": 32, **block}, {"channels": 64, **block}], pool="flatten", fc_layers=[128])
    encoder = ImageCnnEncoder(config, IMAGE_SPEC, hidden_size=128)
    assert sum(p.numel() for p in _own_parameters(encoder)) == sum(p.numel() for p in reference.parameters())
    _copy(reference, encoder)
    pixels, normalised = _images()
    out = encoder(pixels, torch.ones(6, 1, dtype=torch.bool))
    torch.testing.assert_close(out.pooled, reference(normalised), rtol=1e-5, atol=1e-5)
    assert out.tokens.shape == (6, 1, 128)


@pytest.mark.parametrize("options,layers", [
    ({"norm": "batch", "activation": "gelu", "pool": "avg", "kernel": 5, "stride": 1},
     lambda c_in, c: [nn.Conv2d(c_in, c, 5, padding=2, bias=False), nn.BatchNorm2d(c), nn.GELU(), nn.AvgPool2d(2)]),
    ({"norm": "group", "groups": 4, "activation": "silu", "pool": "none", "stride": 2, "dropout": 0.3},
     lambda c_in, c: [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.GroupNorm(4, c), nn.SiLU(), nn.Dropout(0.3)]),
    ({"norm": "layer", "activation": "tanh", "pool": "max", "bias": True, "padding": 0},
     lambda c_in, c: [nn.Conv2d(c_in, c, 3, padding=0), nn.GroupNorm(1, c), nn.Tanh(), nn.MaxPool2d(2, ceil_mode=True)]),
])
def test_block_options_and_max_readout_with_an_fc_layer(options, layers):
    reference_trunk = nn.Sequential(*layers(1, 16), *layers(16, 32))
    config = ImageCnnConfig(blocks=[{"channels": 16, **options}, {"channels": 32, **options}], pool="max", fc_layers=[48])
    encoder = ImageCnnEncoder(config, IMAGE_SPEC, hidden_size=48).eval()
    head = nn.Sequential(nn.Linear(32, 48), nn.ReLU())
    reference = nn.Sequential(reference_trunk, nn.AdaptiveMaxPool2d(1), nn.Flatten(), head).eval()
    assert sum(p.numel() for p in _own_parameters(encoder)) == sum(p.numel() for p in reference.parameters())
    _copy(reference, encoder)
    pixels, normalised = _images()
    torch.testing.assert_close(encoder(pixels, torch.ones(6, 1, dtype=torch.bool)).pooled, reference(normalised),
                               rtol=1e-5, atol=1e-5)


def test_the_default_image_encoder_is_what_its_docstring_says():
    encoder = ImageCnnEncoder(ImageCnnConfig(channels=[8, 16]), IMAGE_SPEC, hidden_size=24).eval()
    reference = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.GELU(), nn.MaxPool2d(2),
                              nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.GELU(), nn.MaxPool2d(2),
                              nn.Conv2d(16, 24, 1)).eval()
    _copy(reference, encoder)
    pixels, normalised = _images()
    out = encoder(pixels, torch.ones(6, 1, dtype=torch.bool))
    torch.testing.assert_close(out.pooled, reference(normalised).mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)
    assert out.tokens.shape == (6, 64, 24)


def test_audio_cnn_with_max_over_time_and_an_fc_is_the_hand_written_one():
    reference = nn.Sequential(nn.Conv1d(64, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
                              nn.Conv1d(32, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(),
                              nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(64, 128), nn.ReLU()).eval()
    config = AudioCnnConfig(blocks=[{"channels": 32, "kernel": 5, "bias": True, "activation": "relu"},
                                    {"channels": 64, "kernel": 3, "bias": True, "activation": "relu", "pool": "none"}],
                            pool="max", fc_layers=[128])
    encoder = AudioCnnEncoder(config, AUDIO_SPEC, hidden_size=128).eval()
    assert sum(p.numel() for p in _own_parameters(encoder)) == sum(p.numel() for p in reference.parameters())
    _copy(reference, encoder)
    features = torch.randn(5, 64, 40, generator=torch.Generator().manual_seed(1))
    out = encoder(features, torch.ones(5, 40, dtype=torch.bool))
    torch.testing.assert_close(out.pooled, reference(features), rtol=1e-5, atol=1e-5)


def test_audio_flatten_and_avg_pooling_skip_padded_frames():
    config = AudioCnnConfig(blocks=[{"channels": 8, "pool": "avg"}, {"channels": 8, "pool": "avg"}], pool="flatten")
    encoder = AudioCnnEncoder(config, AUDIO_SPEC, hidden_size=16).eval()
    features = torch.randn(2, 64, 40, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 30:] = False
    out = encoder(features, mask)
    changed = features.clone()
    changed[1, :, 30:] = 100.0  # what lies in the padding never reaches the output
    torch.testing.assert_close(encoder(changed, mask).pooled, out.pooled)
    assert encoder.fc[-1].in_features == 8 * 10


def test_concat_without_projection_is_the_plain_concatenation():
    fusion = ConcatFusion(ConcatFusionConfig(projection="none"), ["b", "a"], hidden_size=4)
    outputs = {name: EncoderOutput(torch.zeros(2, 1, 4), torch.ones(2, 1, dtype=torch.bool), torch.full((2, 4), float(i)))
               for i, name in enumerate(["a", "b"])}
    assert sum(p.numel() for p in fusion.parameters()) == 0
    torch.testing.assert_close(fusion(outputs).fused, torch.cat([outputs["a"].pooled, outputs["b"].pooled], dim=-1))


def test_a_video_frame_network_takes_the_same_block_and_read_out_settings():
    from mmcli.models.encoders.video import VideoFramesConfig, VideoFramesEncoder

    frame = {"type": "cnn", "blocks": [{"channels": 8, "norm": "group", "groups": 4, "activation": "relu"},
                                       {"channels": 16, "pool": "avg"}], "pool": "flatten", "fc_layers": [32]}
    spec = {"channels": 3, "size": 16, "num_frames": 4, "mean": [0.5] * 3, "std": [0.25] * 3}
    encoder = VideoFramesEncoder(VideoFramesConfig(frame_encoder=frame), spec, hidden_size=32).eval()
    cnn = encoder.frame_encoder.cnn.net
    assert isinstance(cnn[1], nn.GroupNorm) and isinstance(cnn[2], nn.ReLU) and isinstance(cnn[-1], nn.AvgPool2d)
    assert encoder.frame_encoder.fc[0].in_features == 16 * 4 * 4
    frames = torch.randint(0, 256, (2, 4, 3, 16, 16), dtype=torch.uint8)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    out = encoder(frames, mask)
    assert out.pooled.shape == (2, 32) and torch.isfinite(out.pooled).all()


def _attention_pool(tokens: torch.Tensor, score: nn.Linear) -> torch.Tensor:
    """By hand: ``sum_t softmax_t(w . h_t + b) h_t`` over the rows of ``tokens [T, D]`` (the real positions)."""
    logits = tokens @ score.weight[0] + score.bias[0]
    weights = torch.exp(logits - logits.max())
    return (weights / weights.sum()) @ tokens


def test_attention_read_out_is_the_hand_written_one_over_real_positions():
    config = AudioCnnConfig(channels=[8], pool="attention")
    encoder = AudioCnnEncoder(config, AUDIO_SPEC, hidden_size=16).eval()
    trunk = nn.Sequential(nn.Conv1d(64, 8, 5, padding=2, bias=False), nn.BatchNorm1d(8), nn.GELU(),
                          nn.MaxPool1d(2, ceil_mode=True), nn.Conv1d(8, 16, 1))
    score = nn.Linear(16, 1)
    reference = nn.ModuleList([trunk, score]).eval()
    torch.manual_seed(4)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0, 0.5)
        trunk[1].running_mean.normal_(0, 0.5), trunk[1].running_var.uniform_(0.5, 2.0)
    _copy(reference, encoder)
    features = torch.randn(2, 64, 40, generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[1, 20:] = False
    with torch.no_grad():
        out = encoder(features, mask)
        full = trunk(features[:1])[0].T  # [20, 16]: 40 frames -> 20 tokens
        short = trunk(features[1:, :, :20])[0].T  # [10, 16]: only row 1's 20 real frames (the conv pads with zeros)
        torch.testing.assert_close(out.tokens[1, :10], short, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.pooled[0], _attention_pool(full, score), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.pooled[1], _attention_pool(short, score), rtol=1e-5, atol=1e-5)
    image = ImageCnnEncoder(ImageCnnConfig(channels=[4, 8], pool="attention"), IMAGE_SPEC, hidden_size=8)
    assert image(_images(2)[0], torch.ones(2, 1, dtype=torch.bool)).pooled.shape == (2, 8)
