"""The shared noise model: per-row levels, untouched rows and columns, text token dropout."""

import pytest
import torch

from mmcli.data.corruption import corrupt_rows
from mmcli.evaluation.robustness import corrupt
from mmcli.training.callbacks.modality_noise import corrupt_modalities


def tensors(rows: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "img": torch.randint(0, 256, (rows, 3, 8, 8), dtype=torch.uint8, generator=generator),
        "img_mask": torch.ones(rows, dtype=torch.bool),
        "vid": torch.randint(0, 256, (rows, 4, 3, 4, 4), dtype=torch.uint8, generator=generator),
        "vid_mask": torch.ones(rows, 4, dtype=torch.bool),
        "aud": torch.randn(rows, 10, 32, generator=generator),
        "aud_mask": torch.ones(rows, 10, dtype=torch.bool),
        "txt": torch.randint(5, 50, (rows, 12), generator=generator),
        "txt_mask": torch.ones(rows, 12, dtype=torch.bool),
    }


MODALITIES = {"img": "image", "vid": "video", "aud": "audio", "txt": "text"}
SPECS = {"img": {}, "vid": {}, "aud": {"std": [2.0]}, "txt": {"pad_id": 0}}


@pytest.mark.parametrize("name", list(MODALITIES))
def test_only_rows_with_a_level_change(name):
    data = tensors()
    levels = torch.tensor([0.0, 1.0, 0.0, 0.5, 0.0, 0.2])
    out = corrupt_rows(data, name, MODALITIES[name], SPECS[name], levels, torch.Generator().manual_seed(1))
    changed = (out[name] != data[name]).flatten(1).any(dim=1)
    assert changed.tolist() == [False, True, False, True, False, True]
    assert out[name].dtype == data[name].dtype
    for other in MODALITIES:
        if other != name:
            assert out[other] is data[other] and out[f"{other}_mask"] is data[f"{other}_mask"]


def test_stronger_noise_moves_pixels_and_features_further():
    data = tensors(200)
    for name in ("img", "aud"):
        gaps = []
        for level in (0.1, 0.5, 1.0):
            out = corrupt(data, name, MODALITIES[name], SPECS[name], level, torch.Generator().manual_seed(0))
            gaps.append((out[name].float() - data[name].float()).abs().mean().item())
        assert gaps[0] < gaps[1] < gaps[2]


def test_text_full_level_drops_every_token_and_its_mask():
    data = tensors()
    out = corrupt_rows(data, "txt", "text", SPECS["txt"], torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert not out["txt_mask"][0].any() and (out["txt"][0] == 0).all()
    assert out["txt_mask"][1:].all() and torch.equal(out["txt"][1:], data["txt"][1:])


def test_scalar_level_is_the_per_row_model_at_one_level():
    data = tensors()
    scalar = corrupt(data, "aud", "audio", SPECS["aud"], 0.7, torch.Generator().manual_seed(4))
    rows = corrupt_rows(data, "aud", "audio", SPECS["aud"], torch.full((6,), 0.7), torch.Generator().manual_seed(4))
    assert torch.equal(scalar["aud"], rows["aud"])
    assert corrupt(data, "aud", "audio", SPECS["aud"], 0.0, torch.Generator())["aud"] is data["aud"]


def test_training_noise_corrupts_about_the_asked_share_and_keeps_masks():
    torch.manual_seed(0)
    data = tensors(1000)
    inputs = {name: (MODALITIES[name], SPECS[name]) for name in ("img", "aud")}
    out = corrupt_modalities(data, inputs, 0.3)
    for name in inputs:
        share = (out[name] != data[name]).flatten(1).any(dim=1).float().mean().item()
        assert 0.22 < share < 0.38, (name, share)
        assert torch.equal(out[f"{name}_mask"], data[f"{name}_mask"])  # corrupted, not missing
    assert corrupt_modalities(data, inputs, 0.0) is data


def test_training_noise_is_a_function_of_the_seed():
    inputs = {"img": ("image", {}), "txt": ("text", {"pad_id": 0})}
    torch.manual_seed(7)
    first = corrupt_modalities(tensors(50), inputs, 0.5)
    torch.manual_seed(7)
    second = corrupt_modalities(tensors(50), inputs, 0.5)
    assert all(torch.equal(first[k], second[k]) for k in first)
