import torch

from mmcli.training.callbacks.modality_dropout import drop_modalities


def batch(rows: int = 400) -> dict[str, torch.Tensor]:
    return {"a": torch.zeros(rows, 3), "a_mask": torch.ones(rows, 3, dtype=torch.bool),
            "b": torch.zeros(rows, 1), "b_mask": torch.ones(rows, 1, dtype=torch.bool),
            "c_mask": torch.zeros(rows, 5, dtype=torch.bool)}


def present(out: dict, name: str) -> torch.Tensor:
    return out[f"{name}_mask"].any(dim=1)


def test_drops_about_the_asked_share_and_never_a_whole_row():
    torch.manual_seed(0)
    out = drop_modalities(batch(), ["a", "b", "c"], 0.4)
    share = 1 - present(out, "a").float().mean().item()
    assert 0.25 < share < 0.5
    assert (present(out, "a") | present(out, "b")).all(), "a row with present inputs keeps at least one"
    assert not present(out, "c").any(), "already-missing inputs stay missing"


def test_zero_probability_and_single_input_are_no_ops():
    original = batch()
    assert drop_modalities(original, ["a", "b"], 0.0) is original
    assert drop_modalities(original, ["a"], 0.9) is original


def test_same_seed_same_rows():
    torch.manual_seed(3)
    first = drop_modalities(batch(), ["a", "b"], 0.5)
    torch.manual_seed(3)
    second = drop_modalities(batch(), ["a", "b"], 0.5)
    assert torch.equal(first["a_mask"], second["a_mask"]) and torch.equal(first["b_mask"], second["b_mask"])
