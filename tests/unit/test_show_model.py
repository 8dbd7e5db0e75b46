"""recipes show-model: every parameter of the model is listed once, under the component that owns it;
concat fusion without projection widens the heads."""

from __future__ import annotations

from mmcli.workflows.show_model import describe_model

from tests.unit.model_fixtures import make_batch, model


def test_every_parameter_is_in_one_component_and_one_layer():
    built = model("gated")
    described = describe_model(built)
    assert described["parameters"] == sum(p.numel() for p in built.parameters()) == described["trainable"]
    assert sum(c["parameters"] for c in described["components"]) == described["parameters"]
    for component in described["components"]:
        assert sum(layer["parameters"] for layer in component["layers"]) == component["parameters"], component["component"]
    names = [c["component"] for c in described["components"]]
    assert all(n.startswith("encoders.") for n in names[:4])
    assert "fusion" in names and "objectives.label" in names
    image = next(c for c in described["components"] if c["type"].startswith("Image"))
    assert any("Conv2d" in layer["layer"] for layer in image["layers"])


def test_concat_without_projection_feeds_the_whole_concatenation_to_the_heads():
    projected = model({"type": "concat"})
    plain = model({"type": "concat", "projection": "none"})
    inputs = len(plain.backbone.encoders)
    hidden = plain.backbone.encoders[next(iter(plain.backbone.encoders))].missing.numel()
    assert not any(p.numel() for p in plain.backbone.fusion.parameters())
    assert plain.objectives["label"].head[-1].in_features == inputs * hidden
    assert projected.objectives["label"].head[-1].in_features == hidden
    batch = make_batch()
    rep = plain.backbone.fuse(plain.backbone.encode(batch))
    assert rep.fused.shape[-1] == inputs * hidden
    assert plain.objectives["label"].predict(rep).shape == (len(batch["row_id"]), 3)
