"""Fusions: the math on tiny hand-checkable cases, not just shapes."""

from __future__ import annotations

import pytest
import torch

from mmcli.errors import RecipeError
from mmcli.models.outputs import EncoderOutput
from mmcli.registries import FUSIONS

B, D = 3, 4


def config(name: str, **settings: object):
    return dict(zip(FUSIONS.names(), FUSIONS.configs()))[name](**settings)


def build(name: str, names: list[str], **settings: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return FUSIONS.build(config(name, **settings), input_names=names, hidden_size=D).eval()


def encoded(pooled: torch.Tensor, present: list[bool] | None = None) -> EncoderOutput:
    mask = torch.tensor(present if present is not None else [True] * len(pooled)).unsqueeze(1).expand(-1, 2)
    return EncoderOutput(torch.zeros(len(pooled), 2, pooled.shape[1]), mask.clone(), pooled)


def set_identity(linear: torch.nn.Linear) -> None:
    with torch.no_grad():
        linear.weight.copy_(torch.eye(*linear.weight.shape))
        linear.bias.zero_()


def test_tensor_fusion_is_the_outer_product_of_one_appended_vectors() -> None:
    fusion = build("tensor", ["a", "b", "c"], rank_dim=D)  # rank_dim = D: identity projections possible
    for projection in fusion.projections:
        set_identity(projection)
    g = torch.Generator().manual_seed(1)
    x = {n: torch.randn(B, D, generator=g) for n in "abc"}
    outs = {n: encoded(v) for n, v in x.items()}
    one = torch.ones(B, 1)
    za, zb, zc = (torch.cat([x[n], one], dim=1) for n in "abc")
    by_hand = torch.stack([torch.outer(torch.outer(za[i], zb[i]).flatten(), zc[i]).flatten() for i in range(B)])
    assert fusion.num_features == (D + 1) ** 3 == by_hand.shape[1]
    with torch.no_grad():
        torch.testing.assert_close(fusion.features(outs), by_hand)
        torch.testing.assert_close(fusion(outs).fused, by_hand @ fusion.output.weight.T + fusion.output.bias)
        # the product holds the unimodal terms (other factors at their constant 1) and the constant itself
        features = fusion.features(outs).view(B, D + 1, D + 1, D + 1)
        torch.testing.assert_close(features[:, :D, D, D], x["a"])
        torch.testing.assert_close(features[:, D, D, :D], x["c"])
        assert (features[:, D, D, D] == 1).all()


def test_tensor_fusion_missing_modality_is_the_neutral_element() -> None:
    """A missing input enters as ``z = [0, ..., 0, 1]`` whatever its encoder gave (its learned "missing"
    vector): the product holds exactly the other input's terms and the constant."""
    fusion = build("tensor", ["a", "b"], rank_dim=D)  # as initialised: projections with a bias, z = [P x + c; 1]
    g = torch.Generator().manual_seed(2)
    xa, xb = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    present_b = [True, False, True]  # row 1 has no b
    other_b = xb.clone()
    other_b[1] = 100.0  # a different vector for the missing b
    with torch.no_grad():
        features = fusion.features({"a": encoded(xa), "b": encoded(xb, present_b)}).view(B, D + 1, D + 1)
        fused = fusion({"a": encoded(xa), "b": encoded(xb, present_b)}).fused
        changed = fusion({"a": encoded(xa), "b": encoded(other_b, present_b)}).fused
        z_a = torch.cat([fusion.projections[0](xa[1]), torch.ones(1)])  # names sorted: a, b
    expected = torch.zeros(D + 1, D + 1)
    expected[:, D] = z_a  # z_a ⊗ [0, ..., 0, 1]: a's terms and the constant, nothing of b, nothing wiped out
    torch.testing.assert_close(features[1], expected)
    torch.testing.assert_close(changed[1], fused[1])  # the missing input's vector has no influence
    assert features[0, :D, :D].abs().sum() > 0 and features[2, :D, :D].abs().sum() > 0  # present rows keep b's terms


def test_tensor_fusion_refuses_a_huge_product() -> None:
    with pytest.raises(RecipeError, match="model.fusion.rank_dim"):
        build("tensor", ["a", "b", "c", "d"], rank_dim=32, max_features=1000)  # 33 ** 4 features


def test_lowrank_rank_one_is_the_product_of_factor_projections() -> None:
    fusion = build("lowrank_tensor", ["a", "b", "c"], rank=1)
    with torch.no_grad():
        fusion.bias.normal_()
    g = torch.Generator().manual_seed(3)
    x = {n: torch.randn(B, D, generator=g) for n in "abc"}
    outs = {n: encoded(v, [True, True, False] if n == "b" else None) for n, v in x.items()}
    factors = []
    for name, factor in zip(fusion.names, fusion.factors):
        v = x[name] * torch.tensor([[1.0], [1.0], [0.0 if name == "b" else 1.0]])  # missing b in row 2: zeros
        factors.append(torch.cat([v, torch.ones(B, 1)], dim=1) @ factor[0].detach())  # [B, D]
    expected = factors[0] * factors[1] * factors[2] + fusion.bias.detach()
    with torch.no_grad():
        torch.testing.assert_close(fusion(outs).fused, expected)


def test_lowrank_equals_tensor_fusion_with_the_reconstructed_weight() -> None:
    """sum_r prod_m W_m^r [x_m; 1] == W vec([x_a; 1] ⊗ [x_b; 1]) with W[o, i, j] = sum_r W_a^r[i, o] W_b^r[j, o]."""
    fusion = build("lowrank_tensor", ["a", "b"], rank=3)
    g = torch.Generator().manual_seed(4)
    xa, xb = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    wa, wb = (f.detach() for f in fusion.factors)
    full = torch.einsum("rio,rjo->oij", wa, wb)  # [D, D + 1, D + 1]
    za, zb = torch.cat([xa, torch.ones(B, 1)], 1), torch.cat([xb, torch.ones(B, 1)], 1)
    expected = torch.einsum("oij,bi,bj->bo", full, za, zb) + fusion.bias.detach()
    with torch.no_grad():
        torch.testing.assert_close(fusion({"a": encoded(xa), "b": encoded(xb)}).fused, expected)


def test_gated_single_present_modality_is_its_tanh_transform() -> None:
    fusion = build("gated", ["a", "b", "c"])
    g = torch.Generator().manual_seed(5)
    x = {n: torch.randn(B, D, generator=g) for n in "abc"}
    # row 0: only a; row 1: only c; row 2: all three
    present = {"a": [True, False, True], "b": [False, False, True], "c": [False, True, True]}
    with torch.no_grad():
        fused = fusion({n: encoded(x[n], present[n]) for n in "abc"}).fused
        h = {n: torch.tanh(fusion.transforms[fusion.names.index(n)](x[n])) for n in "abc"}
        torch.testing.assert_close(fused[0], h["a"][0])  # the gates renormalise over the present modalities
        torch.testing.assert_close(fused[1], h["c"][1])
        # row 2: a per-feature convex combination of the three tanh transforms (gates in [0, 1] sum to 1)
        stacked = torch.stack([h[n][2] for n in "abc"])
        assert (fused[2] <= stacked.max(0).values + 1e-6).all() and (fused[2] >= stacked.min(0).values - 1e-6).all()


def test_gated_two_modalities_is_the_seed_formula() -> None:
    """Two inputs: ``g ⊙ h_t + (1 - g) ⊙ h_v`` with ``g = sigmoid(logit_t - logit_v)`` (a 2-way softmax)."""
    fusion = build("gated", ["t", "v"])
    g = torch.Generator().manual_seed(6)
    xt, xv = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    with torch.no_grad():
        fused = fusion({"t": encoded(xt), "v": encoded(xv)}).fused
        h_t = torch.tanh(fusion.transforms[fusion.names.index("t")](xt))
        h_v = torch.tanh(fusion.transforms[fusion.names.index("v")](xv))
        logits = fusion.gate(torch.cat([xt, xv], dim=1)).view(B, 2, D)  # names sorted: t, v
        gate = torch.sigmoid(logits[:, 0] - logits[:, 1])
        torch.testing.assert_close(fused, gate * h_t + (1 - gate) * h_v)


def test_sum_excludes_missing_modalities() -> None:
    fusion = build("sum", ["a", "b", "c"])
    g = torch.Generator().manual_seed(7)
    x = {n: torch.randn(B, D, generator=g) for n in "abc"}
    present = {"a": [True, True, False], "b": [True, False, False], "c": [True, True, False]}
    with torch.no_grad():
        fused = fusion({n: encoded(x[n], present[n]) for n in "abc"}).fused
        p = {n: fusion.projections[fusion.names.index(n)](x[n]) for n in "abc"}
        gelu = torch.nn.functional.gelu
        torch.testing.assert_close(fused[0], gelu(p["a"][0] + p["b"][0] + p["c"][0]))
        torch.testing.assert_close(fused[1], gelu(p["a"][1] + p["c"][1]))  # b missing: not in the sum
        assert (fused[2] == 0).all()  # nothing present: GELU(0)


def test_late_fusion_averages_per_modality_predictions_over_present_inputs() -> None:
    from mmcli.models.backbone import Backbone
    from mmcli.models.outputs import EncoderOutput
    from mmcli.objectives.base import BuildContext
    from mmcli.registries import FUSIONS, OBJECTIVES

    torch.manual_seed(0)
    fusion = FUSIONS.build(dict(zip(FUSIONS.names(), FUSIONS.configs()))["late"](), input_names=["b", "a"], hidden_size=4)
    config = dict(zip(OBJECTIVES.names(), OBJECTIVES.configs()))["regression"](column="y")
    task = OBJECTIVES.build(config, context=BuildContext(name="y", hidden_size=4, inputs={}, late_inputs=("a", "b"),
                                                         target_spec={"mean": 0.0, "std": 1.0}))
    backbone = Backbone({}, fusion)
    backbone.eval(), task.eval()  # no dropout: outputs must be comparable
    pooled = {n: torch.randn(3, 4) for n in ("a", "b")}
    mask_b = torch.tensor([[True], [False], [True]])
    outputs = {"a": EncoderOutput(torch.zeros(3, 1, 4), torch.ones(3, 1, dtype=torch.bool), pooled["a"]),
               "b": EncoderOutput(torch.zeros(3, 1, 4), mask_b, pooled["b"])}
    rep = backbone.fuse(outputs)
    prediction = task.predict(rep)
    vectors = rep.late.vectors
    alone_a = task.finish(task.heads["a"](vectors[:, 0]))
    alone_b = task.finish(task.heads["b"](vectors[:, 1]))
    assert torch.allclose(prediction[1], alone_a[1]), "b is missing in row 1: a's prediction alone"
    assert torch.allclose(prediction[0], (alone_a[0] + alone_b[0]) / 2)
