"""Encoder specifics beyond the generic registry tests: ResNet stems and weight files, ViT patching,
the bag-of-embeddings mean, and video frames through a registered image encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from mmcli.errors import RecipeError
from mmcli.models.encoders.image_resnet import ImageResNetConfig
from mmcli.models.encoders.image_vit import ImageViTConfig
from mmcli.models.encoders.text_bag import TextEmbeddingBagConfig
from mmcli.models.encoders.video import VideoFramesConfig
from mmcli.registries import ENCODERS
from test_encoders import B, D, make_input, scramble_padding


def build(modality: str, config: object, spec: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return ENCODERS[modality].build(config, spec=spec, hidden_size=D)


def image_spec(channels: int = 3, size: int = 8) -> dict:
    return {"channels": channels, "size": size, "mean": [0.5] * channels, "std": [0.25] * channels}


# ---------------------------------------------------------------------------------------------- text


def test_embedding_bag_is_the_mean_of_real_token_embeddings() -> None:
    spec, x, mask = make_input("text")
    encoder = build("text", TextEmbeddingBagConfig(), spec).eval()
    out = encoder(x, mask)
    weight = encoder.tokens.weight.detach()
    for row in range(3):
        ids = x[row][mask[row]]
        expected = F.embedding_bag(ids, weight, torch.tensor([0]), mode="mean")[0]
        torch.testing.assert_close(out.pooled[row], expected)
        torch.testing.assert_close(out.tokens[row][mask[row]], weight[ids])
    assert torch.equal(out.mask, mask)


# -------------------------------------------------------------------------------------------- resnet


@pytest.mark.parametrize("size", [8, 33, 40])
def test_resnet_token_grid_matches_the_feature_map(size: int) -> None:
    spec = image_spec(size=size)
    encoder = build("image", ImageResNetConfig(), spec).eval()
    x = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    out = encoder(x, torch.tensor([[True], [False]]))
    cells = encoder.resnet.out_size(size) ** 2
    assert out.tokens.shape == (2, cells, D) and out.mask.tolist() == [[True] * cells, [False] * cells]
    assert encoder.resnet(torch.zeros(1, 3, size, size)).shape == (1, D, *[encoder.resnet.out_size(size)] * 2)


def test_resnet_single_channel_stem() -> None:
    spec, x, mask = make_input("image", channels=1)
    encoder = build("image", ImageResNetConfig(arch="resnet18"), spec)
    stem = encoder.resnet.net[0]
    assert stem.in_channels == 1 and stem.weight.shape == (64, 1, 7, 7)
    out = encoder(x, mask)
    assert out.pooled.shape == (B, D) and out.present.tolist() == [True, True, True, False]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("channels", [3, 1])
def test_resnet_loads_a_local_state_dict(tmp_path, suffix: str, channels: int) -> None:
    import torchvision

    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None)
    state = source.state_dict()  # includes fc.*, which the encoder drops
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # wrapped + DataParallel prefix
    encoder = build("image", ImageResNetConfig(weights=str(path)), image_spec(channels))
    net = encoder.resnet.net
    torch.testing.assert_close(net[4][0].conv1.weight, state["layer1.0.conv1.weight"])
    torch.testing.assert_close(net[7][1].bn2.running_var, state["layer4.1.bn2.running_var"])
    expected_stem = state["conv1.weight"] if channels == 3 else state["conv1.weight"].sum(dim=1, keepdim=True)
    torch.testing.assert_close(net[0].weight, expected_stem)


def test_resnet_weight_file_errors(tmp_path) -> None:
    import torchvision

    with pytest.raises(RecipeError, match="no such file"):
        build("image", ImageResNetConfig(weights=str(tmp_path / "missing.pth")), image_spec())
    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(RecipeError, match="is not a torchvision resnet18 state_dict"):
        build("image", ImageResNetConfig(weights=str(wrong)), image_spec())
    junk = tmp_path / "junk.pth"
    torch.save({"not": "tensors"}, junk)
    with pytest.raises(RecipeError, match="does not hold a state_dict"):
        build("image", ImageResNetConfig(weights=str(junk)), image_spec())


def _basic_block_parameters(cin: int, cout: int, stride: int) -> int:
    """Two 3x3 convs (no bias) with a BatchNorm each, plus a 1x1 conv + BatchNorm shortcut when the shape changes."""
    shortcut = cin * cout + 2 * cout if stride != 1 or cin != cout else 0
    return 9 * cin * cout + 9 * cout * cout + 2 * 2 * cout + shortcut


def _hand_count(layers: list[int], widths: list[int], in_channels: int, hidden: int) -> int:
    total = in_channels * widths[0] * 49 + 2 * widths[0]  # 7x7 stem + its BatchNorm
    previous = widths[0]
    for stage, (blocks, width) in enumerate(zip(layers, widths)):
        total += _basic_block_parameters(previous, width, 1 if stage == 0 else 2)
        total += (blocks - 1) * _basic_block_parameters(width, width, 1)
        previous = width
    return total + previous * hidden + hidden  # the 1x1 projection to the hidden size


@pytest.mark.parametrize("layers, channels, widths", [([1, 1, 1, 1], 16, [16, 32, 64, 128]),
                                                      ([1, 2, 1, 1], [8, 8, 16, 24], [8, 8, 16, 24])])
def test_small_resnet_has_the_hand_counted_parameters_and_trains_a_step(layers, channels, widths) -> None:
    config = ImageResNetConfig(layers=layers, channels=channels)
    encoder = build("image", config, image_spec(size=32))
    trunk = encoder.resnet.net
    assert sum(p.numel() for p in trunk.parameters()) == _hand_count(layers, widths, 3, D)
    assert [len(trunk[4 + stage]) for stage in range(4)] == layers
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mask = torch.tensor([[True], [True], [True], [False]])
    before = [p.detach().clone() for p in encoder.parameters()]
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.1)
    out = encoder(x, mask)
    assert out.tokens.shape == (4, 1, D) and out.pooled.shape == (4, D)
    out.pooled.pow(2).mean().backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in encoder.parameters())
    assert sum(not torch.equal(a, b) for a, b in zip(before, encoder.parameters())) > len(before) // 2


def test_resnet18_shaped_custom_tower_is_resnet18_and_loads_its_weights(tmp_path) -> None:
    import torchvision

    reference = {k: v.shape for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
                 if not k.startswith("fc.")}
    custom = build("image", ImageResNetConfig(layers=[2, 2, 2, 2], channels=64), image_spec()).resnet.net
    shapes = {k: v.shape for k, v in torch.nn.Sequential(*custom[:8]).state_dict().items()}
    renamed = {f"{['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4'][int(k.split('.')[0])]}"
               f".{k.split('.', 1)[1]}": v for k, v in shapes.items()}
    assert renamed == reference
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    loaded = build("image", ImageResNetConfig(layers=[2, 2, 2, 2], channels=64, weights=str(path)), image_spec())
    torch.testing.assert_close(loaded.resnet.net[5][1].conv2.weight, torch.load(path)["layer2.1.conv2.weight"])
    with pytest.raises(RecipeError, match=r"is not a torchvision layers \[1, 1, 1, 1\] channels \[16, 32, 64, 128\]"):
        build("image", ImageResNetConfig(layers=[1, 1, 1, 1], channels=16, weights=str(path)), image_spec())
    assert build("image", ImageResNetConfig(arch="resnet34"), image_spec()).resnet.net[6].__len__() == 6  # kept


@pytest.mark.parametrize("settings, message", [({"arch": "resnet50", "layers": [1, 1, 1, 1]}, "Bottleneck"),
                                               ({"layers": [1, 1, 1]}, "at least 4"),
                                               ({"layers": [1, 0, 1, 1]}, "at least one block"),
                                               ({"channels": [16, 32, 64]}, "or four"),
                                               ({"channels": 0}, "one positive number")])
def test_small_resnet_settings_are_checked(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ImageResNetConfig(**settings)


# ----------------------------------------------------------------------------------------------- vit


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_vit_pads_to_whole_patches_and_skips_missing_images(pooling: str) -> None:
    spec = image_spec(size=10)  # 10 px, 4 px patches: zero-padded to 12, a 3x3 grid
    encoder = build("image", ImageViTConfig(pooling=pooling), spec).eval()
    x = torch.randint(0, 256, (B, 3, 10, 10), dtype=torch.uint8)
    mask = torch.tensor([[True], [True], [False], [True]])
    out = encoder(x, mask)
    assert out.tokens.shape == (B, 9, D) and out.mask.sum(dim=1).tolist() == [9, 9, 0, 9]
    torch.testing.assert_close(out.pooled[2], encoder.missing.detach())
    with torch.no_grad():  # a row's output does not depend on the other rows (or on a missing row's pixels)
        alone = encoder(x[:1], mask[:1])
        noisy = encoder(scramble_padding("image", x, mask), mask)
    torch.testing.assert_close(alone.pooled[0], out.pooled[0])
    torch.testing.assert_close(noisy.pooled, out.pooled)


def test_vit_heads_must_divide_hidden_size() -> None:
    with pytest.raises(RecipeError, match="heads"):
        build("image", ImageViTConfig(heads=3), image_spec())


# --------------------------------------------------------------------------------------------- video

FRAME_VIT = {"frame_encoder": {"type": "vit", "layers": 1}, "temporal": "transformer"}


def test_video_default_is_unchanged() -> None:
    config = VideoFramesConfig()
    assert (config.frame_encoder, config.temporal, config.spatial, config.channels) == (None, "conv", "flatten", [32, 64, 128])
    spec, _, _ = make_input("video")
    keys = set(build("video", config, spec).state_dict())
    assert {k.split(".")[0] for k in keys} == {"normalize", "cnn", "spatial", "temporal_conv", "positions", "missing"}


@pytest.mark.parametrize("settings", [FRAME_VIT, {"frame_encoder": {"type": "cnn", "channels": [4]}, "temporal": "attention"},
                                      {"frame_encoder": {"type": "resnet"}, "temporal": "mean"}],
                         ids=["vit-transformer", "cnn-attention", "resnet-mean"])
def test_video_with_an_image_frame_encoder(settings: dict) -> None:
    spec, x, mask = make_input("video")
    encoder = build("video", VideoFramesConfig(**settings), spec).eval()
    assert encoder.frame_encoder is not None and not hasattr(encoder, "cnn")
    out = encoder(x, mask)
    assert out.tokens.shape == (B, 3, D) and torch.equal(out.mask, mask)
    assert out.present.tolist() == [True, True, True, False] and (out.tokens[~out.mask] == 0).all()
    torch.testing.assert_close(out.pooled[3], encoder.missing.detach())
    with torch.no_grad():
        scrambled = encoder(scramble_padding("video", x, mask), mask)
    torch.testing.assert_close(scrambled.pooled, out.pooled)
    torch.testing.assert_close(scrambled.tokens, out.tokens)
    everything_missing = encoder.train()(torch.zeros_like(x), torch.zeros_like(mask))
    torch.testing.assert_close(everything_missing.pooled, encoder.missing.detach().expand(B, D))


def test_video_frame_encoder_gradients() -> None:
    spec, x, mask = make_input("video")
    encoder = build("video", VideoFramesConfig(**FRAME_VIT), spec).train()
    out = encoder(x, mask)
    (out.pooled * torch.randn(B, D)).sum().add_((out.tokens * torch.randn_like(out.tokens)).sum()).backward()
    frozen = [n for n, p in encoder.named_parameters() if not p.requires_grad]
    assert frozen == ["frame_encoder.missing"]  # padded frames are masked out by the video encoder
    for name, p in encoder.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_video_frame_encoder_settings_are_validated() -> None:
    config = VideoFramesConfig(**FRAME_VIT)
    assert isinstance(config.frame_encoder, ImageViTConfig) and config.frame_encoder.layers == 1
    assert VideoFramesConfig(**config.model_dump()) == config  # a saved recipe round-trips
    with pytest.raises(ValidationError, match="unknown image encoder 'nope'"):
        VideoFramesConfig(frame_encoder={"type": "nope"})
    with pytest.raises(ValidationError, match="layers"):
        VideoFramesConfig(frame_encoder={"type": "vit", "layers": 0})
    with pytest.raises(ValidationError, match="bogus"):
        VideoFramesConfig(frame_encoder={"type": "vit", "bogus": 1})
    with pytest.raises(RecipeError, match="heads"):
        build("video", VideoFramesConfig(temporal="transformer", heads=3), make_input("video")[0])
