"""Gated fusion with ``per_task: true``: one set of gates per task (multi-gate), shared transforms."""

from __future__ import annotations

import torch

from mmcli.models.fusion.gated import GatedFusion, GatedFusionConfig
from tests.unit import model_fixtures
from tests.unit.test_fusion import B, D, NAMES, outputs

TASKS = ["scene", "size"]


def per_task_fusion() -> GatedFusion:
    torch.manual_seed(0)
    return GatedFusion(GatedFusionConfig(per_task=True), NAMES, D, task_names=TASKS)


def test_one_vector_per_task_and_gates_of_their_own() -> None:
    fusion = per_task_fusion().eval()
    fused = fusion(outputs()).task_vectors
    assert set(fused) == set(TASKS) and all(v.shape == (B, D) for v in fused.values())
    assert not torch.allclose(fused["scene"], fused["size"])  # different gates, different mixes
    with torch.no_grad():
        fusion.gate["size"].weight.add_(1.0)  # changing one task's gates leaves the other's vector alone
    again = fusion(outputs()).task_vectors
    torch.testing.assert_close(again["scene"], fused["scene"])
    assert not torch.allclose(again["size"], fused["size"])


def test_off_by_default_keeps_the_shared_gate_and_its_state_dict_keys() -> None:
    torch.manual_seed(0)
    shared = GatedFusion(GatedFusionConfig(), NAMES, D, task_names=TASKS)
    assert shared(outputs()).task_vectors == {}
    assert {k for k in shared.state_dict() if k.startswith("gate.")} == {"gate.weight", "gate.bias"}
    assert {k for k in per_task_fusion().state_dict() if k.startswith("gate.")} == \
        {f"gate.{t}.{p}" for t in TASKS for p in ("weight", "bias")}


def test_a_missing_input_has_no_influence_on_any_task() -> None:
    fusion = per_task_fusion().eval()
    absent = {"audio": [True, False, True, False]}
    a, b = outputs(absent, seed=0), outputs(absent, seed=0)
    b["audio"].pooled.data[~torch.tensor(absent["audio"])] += 5.0  # whatever the missing rows hold
    for task in TASKS:
        torch.testing.assert_close(fusion(a).task_vectors[task], fusion(b).task_vectors[task])


def test_model_with_per_task_gates_trains_every_gate() -> None:
    model = model_fixtures.model({"type": "gated", "per_task": True}).train()
    batch = model_fixtures.make_batch()
    rep = model.backbone(batch)
    assert set(rep.task_vectors) == {"label", "score"} and rep.fused.shape == (B, model_fixtures.D)
    assert model.tasks["label"].predict(rep).shape == (B, 3)
    model(batch)[0].backward()
    for task in ("label", "score"):
        assert model.backbone.fusion.gate[task].weight.grad.abs().sum() > 0, task
