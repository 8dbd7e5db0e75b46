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


def _shown(**kwargs):
    from tests.unit.model_fixtures import recipe

    from mmcli.workflows.show_model import show_model

    return show_model(recipe(**kwargs))


def test_show_model_needs_no_data_and_says_read_outs_dropouts_and_the_optimisation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the fixtures' manifest (unused.csv) does not exist: nothing is read or cached
    shown = _shown(fusion="gated", training={"optimizer": "adam", "scheduler": "constant"})
    assert not list(tmp_path.iterdir()), "no cache, no run directory"
    text = next(c for c in shown["components"] if c["component"] == "encoders.review")
    tokens = next(layer for layer in text["layers"] if "Embedding" in layer["layer"])
    assert tokens["layer"].startswith("Embedding(2000, ")  # the configured maximum vocabulary
    assert any("configured maximum" in note and "inputs.review" in note for note in shown["notes"])
    assert any("placeholder labels" in note for note in shown["notes"])
    encoders = {row["input"]: row for row in shown["encoders"]}
    assert encoders["review"]["readout"] == {"pooling": "mean"} and encoders["review"]["dropouts"] == {"dropout": 0.1}
    assert encoders["photo"]["readout"]["pool"] == "mean" and "fc_dropout" in encoders["photo"]["dropouts"]
    training = shown["training"]
    assert (training["optimizer"], training["weight_decay"], training["warmup_ratio"]) == ("adam", 0.0, 0.0)
    assert training["dropouts"]["model.dropout"] == 0.1 and training["dropouts"]["tasks.label.dropout"] == 0.0
    assert training["dropouts"]["inputs.review.encoder.dropout"] == 0.1
    assert sum(group["parameters"] for group in training["parameter_groups"]) == shown["trainable"]
    adamw = _shown(fusion="gated")["training"]
    assert (adamw["optimizer"], adamw["weight_decay"], adamw["warmup_ratio"]) == ("adamw", 0.01, 0.05)
    decays = {group["weight_decay"]: group for group in adamw["parameter_groups"]}
    assert set(decays) == {0.0, 0.01}
    assert "encoders.review.tokens.weight" in decays[0.0]["examples"]  # embeddings are not decayed
    assert not any(name.endswith("bias") for name in decays[0.01]["examples"])


def test_show_model_sizes_the_heads_from_the_manifest_labels_without_decoding_media(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = ["review,photo,clip,movie,label,score,split"]
    rows += [f"text {i},missing.png,missing.wav,missing.mp4,{'abcde'[i % 5]},{i},train" for i in range(10)]
    (tmp_path / "unused.csv").write_text("\n".join(rows) + "\n")  # the media files do not exist: never opened
    shown = _shown()
    head = next(c for c in shown["components"] if c["component"] == "objectives.label")
    assert head["layers"][-1]["layer"].startswith("Linear(in_features=16, out_features=5")
    assert any("label columns of unused.csv" in note for note in shown["notes"])


def test_show_model_counts_no_fusion_when_no_objective_reads_it():
    shown = _shown(fusion="gated", modalities=["text", "image"], tasks={},
                   objectives={"align": {"type": "contrastive", "inputs": ["photo", "review"]}})
    assert "fusion" not in [c["component"] for c in shown["components"]]
    assert shown["trainable"] == shown["parameters"] == sum(c["parameters"] for c in shown["components"])
    assert any(note.startswith("fusion: not built") for note in shown["notes"])
