"""CLI behaviour on a small dataset: errors, bad rows, predict, encode, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from .conftest import run_cli

FAST = ["training.epochs=2", "training.batch_size=16"]


def _one_line_error(result) -> str:
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    # the error is the last thing printed (progress bars may come before it)
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def test_unknown_fusion_is_one_line_naming_the_key(small_workspace):
    result = run_cli("finetune", "recipes/quickstart.yaml", "model.fusion.type=gatd", cwd=small_workspace)
    assert result.code == 2
    line = _one_line_error(result)
    assert "model.fusion.type" in line and "gatd" in line
    assert "attention" in line and "concat" in line and "gated" in line


def test_unknown_recipe_key_and_bad_value(small_workspace):
    result = run_cli("recipes", "validate", "recipes/quickstart.yaml", "training.epochz=3", cwd=small_workspace)
    assert result.code == 2 and "training.epochz" in _one_line_error(result)
    result = run_cli("recipes", "validate", "recipes/quickstart.yaml", "training.epochs=-1", cwd=small_workspace)
    assert result.code == 2 and "training.epochs" in _one_line_error(result)


def _broken_manifest(workspace: Path) -> tuple[Path, list[str]]:
    """A copy of the manifest with one image path missing and one WAV truncated."""
    source = workspace / "data" / "shapes" / "manifest.csv"
    rows = list(csv.DictReader(source.open()))
    train = [i for i, row in enumerate(rows) if row["split"] == "train"]
    missing_row, truncated_row = train[3], train[7]
    rows[missing_row]["image"] = "images/does-not-exist.png"
    wav = workspace / "data" / "shapes" / "audio" / "truncated.wav"
    original = (workspace / "data" / "shapes" / rows[truncated_row]["audio"]).read_bytes()
    wav.write_bytes(original[: len(original) // 2])
    rows[truncated_row]["audio"] = "audio/truncated.wav"
    target = workspace / "data" / "shapes" / "broken.csv"
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return target, [rows[missing_row]["id"], rows[truncated_row]["id"]]


@pytest.mark.slow
def test_bad_rows_fail_by_default_and_are_skipped_on_request(small_workspace):
    manifest, bad_ids = _broken_manifest(small_workspace)
    args = ["finetune", "recipes/quickstart.yaml", f"data.manifest={manifest}", "name=broken", *FAST]
    result = run_cli(*args, cwd=small_workspace)
    assert result.code == 2
    line = _one_line_error(result)
    assert "2 bad rows" in line and all(row_id in line for row_id in bad_ids)

    result = run_cli(*args, "data.on_error=skip", "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    payload = result.json()
    assert payload["skipped"] == 2
    assert payload["preprocess"]["kept"] + payload["preprocess"]["skipped"] == payload["preprocess"]["rows"]
    errors = [json.loads(line) for line in (small_workspace / "runs" / "broken" / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in errors) == sorted(bad_ids)
    assert any("not found" in e["error"] for e in errors) and any("truncated" in e["error"].lower() for e in errors)


@pytest.mark.slow
def test_same_command_twice_gives_identical_metrics(small_workspace, small_run):
    # A fresh process, a fresh preprocessing cache (tokenizer, statistics refitted) and progress
    # bars on instead of --json: none of them may change a single number.
    result = run_cli("finetune", "recipes/quickstart.yaml", "name=small-again", *FAST, "data.cache_dir=cache-again",
                     cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    again = small_workspace / "runs" / "small-again"
    assert (again / "preprocessing.json").read_bytes() == (small_run / "preprocessing.json").read_bytes()
    first = json.loads((small_run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    first.pop("training"), second.pop("training")
    assert first == second


def test_predict_manifest_and_single_sample(small_workspace, small_run):
    manifest = small_workspace / "data" / "shapes" / "manifest.csv"
    out = small_workspace / "preds.jsonl"
    result = run_cli("predict", str(small_run), "--manifest", str(manifest), "-o", str(out), "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 120
    scene = rows[0]["scene"]
    assert scene["label"] in scene["probabilities"] and sum(scene["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert isinstance(rows[0]["size"]["value"], float)

    shapes = small_workspace / "data" / "shapes"
    result = run_cli("predict", str(small_run), "--image", str(shapes / "images" / "00000.png"),
                     "--audio", str(shapes / "audio" / "00000.wav"), "--text", "it looks crimson", "--json",
                     cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    payload = result.json()
    assert payload["predicted"] == 1 and "scene" in payload["predictions"][0]


@pytest.mark.slow
def test_evaluate_on_another_manifest(small_workspace, small_run):
    # 150 rows: more than one decoding chunk, so two worker processes are forked after the model
    # (and torch's thread pool) exists in the parent; they used to deadlock there
    made = run_cli("datasets", "make", "shapes", "data/extra", "--size", "150", "--seed", "7", cwd=small_workspace)
    assert made.code == 0, made.stderr[-2000:]
    manifest = small_workspace / "data" / "extra" / "manifest.csv"
    result = run_cli("evaluate", str(small_run), "--manifest", str(manifest), "--num-proc", "2", "--json",
                     cwd=small_workspace, timeout=300)
    assert result.code == 0, result.stderr[-2000:]
    payload = result.json()
    assert payload["split"] == "external-extra" and payload["skipped"] == 0
    assert payload["metrics"]["scene"]["count"] == 150  # every row, whatever its split column says
    stored = json.loads((small_run / "metrics.json").read_text())
    assert stored["external-extra"] == payload["metrics"] and "test" in stored

    # a broken row: the run's data.on_error (fail) applies, one line naming the manifest and row
    table = manifest.read_text().splitlines()
    broken = small_workspace / "data" / "extra" / "broken.csv"
    broken.write_text("\n".join([table[0], table[1].replace("images/", "images/missing-"), *table[2:]]) + "\n")
    result = run_cli("evaluate", str(small_run), "--manifest", str(broken), "--json", cwd=small_workspace)
    assert result.code != 0 and "Traceback" not in result.stderr
    assert "broken.csv" in result.stderr and "row" in result.stderr, result.stderr[-1000:]


def test_encode_writes_pooled_and_fused_embeddings(small_workspace, small_run):
    out = small_workspace / "emb.safetensors"
    result = run_cli("encode", str(small_run), "--split", "test", "-o", str(out), "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    tensors = load_file(out)
    assert set(tensors) == {"input.text", "input.image", "input.audio", "input.video", "fused"}
    rows = result.json()["rows"]
    assert all(t.shape == (rows, 64) for t in tensors.values())
    parquet = small_workspace / "emb.parquet"
    assert run_cli("encode", str(small_run), "-o", str(parquet), cwd=small_workspace).code == 0
    import pyarrow.parquet as pq

    assert pq.read_table(parquet).num_rows == rows


def test_help_imports_no_heavy_library():
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom mmcli.cli.app import app\n"
            "for args in (['--help'], ['finetune', '--help'], ['recipes', 'ls', '--help']):\n"
            "    assert CliRunner().invoke(app, args).exit_code == 0\n"
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'evaluate') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_corruption_gate_and_missing_fallback_are_reported_by_finetune_and_predict(small_workspace):
    result = run_cli("finetune", "recipes/quickstart.yaml", *FAST, "name=robust-small", "training.modality_dropout=0.3",
                     "model.unimodal_loss=1.0", "model.corruption_gate={}", "model.missing_fallback={}", "--json",
                     cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    run_dir = small_workspace / "runs" / "robust-small"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    measured = json.loads((run_dir / "missing_fallback.json").read_text())
    inputs = ["text", "image", "audio", "video"]
    assert sorted(metrics["training"]["missing_fallback"]) == sorted(measured["inputs"]) == sorted(inputs)
    for split in ("validation", "test"):
        assert set(metrics[split]["answered_by"]) == {"scene", "motion", "size"}
        assert set(metrics[split]["treated_as_missing"]) == set(inputs)
    shapes = small_workspace / "data" / "shapes"
    result = run_cli("predict", str(run_dir), "--audio", str(shapes / "audio" / "00000.wav"),
                     "--text", "it looks crimson", "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    row = result.json()["predictions"][0]
    missing = {"image", "video"} | set(row["treated_as_missing"])
    decided = metrics["training"]["missing_fallback"]  # missing input -> {task: source other than the model}
    expected = {}
    for task in ("scene", "motion", "size"):
        sources = [decided[name][task] for name in inputs if name in missing and task in decided[name]]
        heads = [source for source in sources if source in inputs and source not in missing]
        if "prior" in sources or heads:
            expected[task] = "prior" if "prior" in sources else heads[0]
    assert row["answered_by"] == expected


@pytest.mark.slow
def test_pretrain_on_a_manifest_without_labels_and_on_broken_media(small_workspace):
    source = small_workspace / "data" / "shapes" / "manifest.csv"
    rows = list(csv.DictReader(source.open()))
    unlabelled = small_workspace / "data" / "shapes" / "unlabelled.csv"
    with unlabelled.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "split", "image", "caption"])
        writer.writeheader()
        writer.writerows({key: row[key] for key in ("id", "split", "image", "caption")} for row in rows)
    args = ["pretrain", "recipes/contrastive.yaml", f"data.manifest={unlabelled}", "training.epochs=1",
            "training.batch_size=16", "name=clip-small", "--json"]
    result = run_cli(*args, cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    payload = result.json()
    assert payload["run_dir"].endswith("clip-small") and payload["metrics"]["test"]["clip"]["count"] > 0
    assert (small_workspace / "runs" / "clip-small" / "checkpoints" / "best" / "model.safetensors").is_file()

    rows[3]["image"] = "images/does-not-exist.png"  # a broken row: counted and reported, as preprocess does
    broken = small_workspace / "data" / "shapes" / "unlabelled-broken.csv"
    with broken.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "split", "image", "caption"])
        writer.writeheader()
        writer.writerows({key: row[key] for key in ("id", "split", "image", "caption")} for row in rows)
    broken_args = [*args[:2], f"data.manifest={broken}", "training.epochs=1", "training.batch_size=16", "name=clip-broken"]
    failed = run_cli(*broken_args, cwd=small_workspace)
    assert failed.code == 2 and "1 bad row" in _one_line_error(failed) and rows[3]["id"] in failed.stderr
    skipped = run_cli(*broken_args, "data.on_error=skip", "--json", cwd=small_workspace)
    assert skipped.code == 0, skipped.stderr[-2000:]
    assert skipped.json()["skipped"] == 1


@pytest.mark.slow
def test_run_chains_pretraining_and_fine_tuning_from_it(small_workspace):
    result = run_cli("run", "recipes/pretrain-then-finetune.yaml", "pretrain.training.epochs=1", "training.epochs=2",
                     "data.train_fraction=0.5", "--check", "--json", cwd=small_workspace)
    assert result.code in (0, 1), result.stderr[-2000:]  # 1: trained, numbers out of range on 120 rows
    payload = result.json()
    pretrained = small_workspace / "runs" / "pretrain-then-finetune-pretrain"
    assert (small_workspace / payload["pretrain"]["run_dir"]).resolve() == pretrained.resolve()
    assert (pretrained / "metrics.json").is_file()
    init = payload["metrics"]["training"]["init"]
    assert Path(init["from"]) == pretrained.resolve() and init["loaded"] > 0
    assert any(key.startswith("backbone.encoders.caption.") for key in init["unexpected"])
    stages = [row.get("stage") for row in payload["check"]]
    assert stages == ["pretrain", None]  # each stage's expected metrics, checked
    human = run_cli("run", "recipes/pretrain-then-finetune.yaml", "pretrain.training.epochs=1", "training.epochs=1",
                    "name=chained-again", cwd=small_workspace)
    assert human.code == 0 and "initialised from" in human.stdout and "unexpected" in human.stdout, human.stdout[-2000:]


def test_encode_every_row_of_another_manifest(small_workspace, small_run):
    source = small_workspace / "data" / "shapes" / "manifest.csv"
    rows = list(csv.DictReader(source.open()))[:10]
    manifest = small_workspace / "data" / "shapes" / "to-encode.csv"
    columns = ["id", "text", "image", "audio", "video"]  # no split, no labels
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({key: row[key] for key in columns} for row in rows)
    out = small_workspace / "encoded.safetensors"
    result = run_cli("encode", str(small_run), "--manifest", str(manifest), "-o", str(out), "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    payload = result.json()
    assert payload["rows"] == 10 and payload["skipped"] == 0 and payload["split"] == "external-to-encode"
    assert "decoding" in result.stderr  # progress on stderr with --json; stdout held only the object
    tensors = load_file(out)
    assert tensors["fused"].shape == (10, 64) and not tensors["fused"].isnan().any()


def test_shell_completion_and_schema_json_and_wide_tables_when_piped(small_workspace):
    import os
    import subprocess
    import sys

    env = {**os.environ, "_MMCLI_COMPLETE": "complete_bash", "COMP_WORDS": "mmcli recipes sc", "COMP_CWORD": "2"}
    env.pop("COLUMNS", None)
    completed = subprocess.run([sys.executable, "-c", "from mmcli.cli.app import app; app(prog_name='mmcli')"],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.stdout.split() == ["schema"], completed.stderr
    assert "--install-completion" in run_cli("--help", cwd=small_workspace).stdout

    schema = run_cli("recipes", "schema", "--json", cwd=small_workspace)
    assert schema.code == 0 and "training" in schema.json()["schema"]["properties"]

    # stdout is a pipe here: rich would assume 80 columns and wrap or cut; each recipe stays one line
    listing = run_cli("recipes", "ls", cwd=small_workspace)
    described = {row["name"]: row["description"] for row in run_cli("recipes", "ls", "--json", cwd=small_workspace).json()["recipes"]}
    lines = listing.stdout.splitlines()
    for name, description in described.items():
        assert any(name in line and description in line for line in lines), (name, listing.stdout)
