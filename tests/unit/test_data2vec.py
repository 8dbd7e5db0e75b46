"""data2vec: a student regresses, where its input is hidden, what an exponential-moving-average teacher's
top layers made of the whole input; the teacher follows the student and is saved with the model."""

from __future__ import annotations

import pytest
import torch

from mmcli.errors import RecipeError
from tests.unit import model_fixtures


def model(input_name: str = "review", encoder: dict | None = None) -> torch.nn.Module:
    from mmcli.model import build_model
    from mmcli.recipe.loader import validate_recipe

    settings = {"type": "data2vec", "input": input_name, "mask_ratio": 0.5, "top_k": 2, "ema_decay": 0.9,
                "ema_end": 0.99}
    recipe = validate_recipe({
        "name": "t", "data": {"manifest": "unused.csv"}, "model": {"hidden_size": model_fixtures.D},
        "inputs": {"review": {"modality": "text", "column": "review",
                              "encoder": encoder or {"type": "transformer", "layers": 3}}},
        "objectives": {"d2v": settings}})
    return build_model(recipe, model_fixtures.preprocessing(recipe))


def test_the_teacher_starts_as_the_encoder_and_follows_it_by_its_decay() -> None:
    trained = model().train()
    objective, encoder = trained.objectives["d2v"], trained.backbone.encoders["review"]
    for teacher, student in zip(objective.teacher.parameters(), encoder.parameters()):
        assert torch.equal(teacher, student) and not teacher.requires_grad
    before = [p.detach().clone() for p in objective.teacher.parameters()]
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(1.0)  # as if the student had trained
    objective.set_progress(0.0)
    batch = model_fixtures.make_batch(["text"])
    trained(batch)
    for old, new, student in zip(before, objective.teacher.parameters(), encoder.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * student.detach())
    objective.set_progress(1.0)
    assert objective.decay == pytest.approx(0.99)
    assert any(key.startswith("objectives.d2v.teacher.") for key in trained.state_dict())


def test_training_lowers_the_loss_and_only_hidden_positions_count() -> None:
    trained = model().train()
    batch = model_fixtures.make_batch(["text"])
    optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=3e-3)

    def loss() -> float:
        with torch.no_grad():
            torch.manual_seed(99)
            return float(trained(batch)[0])

    first = loss()
    for step in range(20):
        torch.manual_seed(step)
        total, _ = trained(batch)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert loss() < first
    objective = trained.objectives["d2v"]
    objective.ratio = 1e-9  # nothing hidden: nothing to learn, a zero loss
    assert float(trained(batch)[1]["d2v"].detach()) == 0.0


def test_an_encoder_without_transformer_layers_is_refused_in_one_line() -> None:
    with pytest.raises(RecipeError, match="no transformer layers") as caught:
        model("review", {"type": "embedding_bag"})
    assert "\n" not in caught.value.one_line()
