"""Contrastive objective: the loss equals an independent reference (one process and two gloo
processes with gathered negatives), group ids make rows positives, and recall@K is computed right."""

from __future__ import annotations

import math
import pytest
import torch
import torch.multiprocessing as mp

from mmcli.models.outputs import EncoderOutput, FusionOutput
from mmcli.models.representation import Representation
from mmcli.objectives.base import BuildContext
from mmcli.evaluation.retrieval import retrieval_metrics
from mmcli.objectives.contrastive import Contrastive, ContrastiveConfig

N, P = 8, 5


def reference(a: torch.Tensor, b: torch.Tensor, groups: list[int], temperature: float) -> torch.Tensor:
    """Symmetric multi-positive InfoNCE written out row by row."""
    a, b = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    total = a.new_zeros(())
    for i in range(len(a)):
        positives = [j for j in range(len(a)) if groups[j] == groups[i]]
        for queries, keys in ((a, b), (b, a)):
            scores = torch.stack([queries[i] @ keys[j] / temperature for j in range(len(a))])
            total = total + (torch.logsumexp(scores, 0) - torch.logsumexp(scores[positives], 0)) / 2
    return total / len(a)


def objective(group_column: str | None = None, learn: bool = True) -> Contrastive:
    config = ContrastiveConfig(inputs=["x", "y"], temperature=0.1, learn_temperature=learn, group_column=group_column)
    return Contrastive(config, BuildContext(name="clip", hidden_size=P, inputs={"x": "image", "y": "text"}))


def rep(a: torch.Tensor, b: torch.Tensor, present_b: torch.Tensor | None = None) -> Representation:
    def output(vector: torch.Tensor, present: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(tokens=vector.unsqueeze(1), mask=present.unsqueeze(1), pooled=vector)

    ones = torch.ones(len(a), dtype=torch.bool)
    encoded = {"x": output(a, ones), "y": output(b, ones if present_b is None else present_b)}
    return Representation(encoded=encoded, inputs=encoded, fusion=FusionOutput(a), shared={"x": a, "y": b})


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, P, generator=g), torch.randn(N, P, generator=g)


def test_loss_equals_the_reference_and_rows_without_both_inputs_are_left_out() -> None:
    a, b = data()
    loss = objective().train().loss(rep(a, b), {})
    torch.testing.assert_close(loss, reference(a, b, list(range(N)), 0.1))
    present = torch.tensor([True] * 5 + [False] * 3)
    partial = objective().train().loss(rep(a, b, present), {})
    torch.testing.assert_close(partial, reference(a[:5], b[:5], list(range(5)), 0.1))
    grouped = objective("caption").train().loss(rep(a, b, present), {"clip_group": torch.arange(N) + 100})
    torch.testing.assert_close(grouped, partial)  # distinct groups: the same loss by the general form
    nothing = objective().train().loss(rep(a, b, torch.zeros(N, dtype=torch.bool)), {})
    assert float(nothing.detach()) == 0.0 and nothing.requires_grad  # no pair: nothing to learn, no NaN


def test_rows_of_one_group_are_positives() -> None:
    a, b = data(1)
    groups = torch.tensor([7, 7, 3, 3, 3, 9, -1, -1])  # -1: no group, each its own
    loss = objective("caption").train().loss(rep(a, b), {"clip_group": groups})
    expected_groups = [7, 7, 3, 3, 3, 9, -100, -101]
    torch.testing.assert_close(loss, reference(a, b, expected_groups, 0.1))
    assert not torch.allclose(loss, reference(a, b, list(range(N)), 0.1))


def test_the_temperature_learns_and_is_clamped() -> None:
    learned = objective()
    a, b = data(2)
    learned.loss(rep(a, b), {}).backward()
    assert learned.log_scale.grad is not None and learned.log_scale.grad != 0
    with torch.no_grad():
        learned.log_scale.fill_(20.0)
    assert float(learned.scale().detach()) == pytest.approx(100.0)  # min_temperature 0.01
    fixed = objective(learn=False)
    assert not list(fixed.parameters())


def _rank(rank: int, init: str, a: torch.Tensor, b: torch.Tensor, results: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        half = N // 2
        local_a = a[rank * half:(rank + 1) * half].clone().requires_grad_(True)
        local_b = b[rank * half:(rank + 1) * half].clone().requires_grad_(True)
        loss = objective(learn=False).train().loss(rep(local_a, local_b), {})
        loss.backward()
        results[rank] = (float(loss), local_a.grad.clone(), local_b.grad.clone())
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_negatives_and_get_the_one_process_gradient(tmp_path) -> None:
    a, b = data(3)
    full_a, full_b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    expected = reference(full_a, full_b, list(range(N)), 0.1)
    expected.backward()
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", a, b, results), nprocs=2, join=True)
        results = dict(results)
    half = N // 2
    for rank, (loss, grad_a, grad_b) in results.items():
        assert math.isclose(loss, float(expected.detach()), rel_tol=1e-5)  # every process: the whole batch's loss
        # DDP averages the two processes' gradients: that average is the one-process gradient
        torch.testing.assert_close(grad_a / 2, full_a.grad[rank * half:(rank + 1) * half])
        torch.testing.assert_close(grad_b / 2, full_b.grad[rank * half:(rank + 1) * half])


def _unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)


def test_retrieval_counts_identical_gallery_items_once_and_asks_identical_queries_once() -> None:
    # rows 0 and 1 share a caption (gallery keys 7, 7): image->caption sees 2 captions, not 3
    images = _unit([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    captions = _unit([[0.0, 1.0], [0.0, 1.0], [1.0, 0.1]])
    keys, rows = torch.tensor([7, 7, 3]), torch.arange(3)
    forward = retrieval_metrics(images, captions, rows, keys, rows, [1, 2])
    assert forward["gallery"] == 2 and forward["queries"] == 3
    # image 0's caption (the shared one) ranks 2nd behind caption 2; images 1 and 2 find theirs first
    assert forward["recall@1"] == pytest.approx(2 / 3) and forward["recall@2"] == pytest.approx(1.0)
    assert forward["median_rank"] == 1.0 and forward["mrr"] == pytest.approx((0.5 + 1 + 1) / 3)
    # caption->image: the shared caption is one query whose positives are images 0 and 1
    backward = retrieval_metrics(captions, images, keys, rows, rows, [1])
    assert backward["queries"] == 2 and backward["gallery"] == 3
    # the shared caption's best image (1) is a positive; caption 2's best is image 0, not image 2
    assert backward["recall@1"] == pytest.approx(1 / 2) and backward["median_rank"] == pytest.approx(1.5)


def test_retrieval_groups_make_rows_positives_for_each_other() -> None:
    a = _unit([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    b = _unit([[0.0, 1.0], [1.0, 0.0], [0.1, 1.0]])
    rows = torch.arange(3)
    alone = retrieval_metrics(a, b, rows, rows, rows, [1])
    grouped = retrieval_metrics(a, b, rows, rows, torch.tensor([0, 0, 1]), [1])
    assert alone["recall@1"] == pytest.approx(1 / 3) and grouped["recall@1"] == pytest.approx(2 / 3)
