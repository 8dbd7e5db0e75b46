"""The quickstart recipe end to end with --check, and the fusion gain over single-modality runs."""

from __future__ import annotations

import json

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow
ALL_INPUTS = ("text", "image", "audio", "video")


@pytest.fixture(scope="module")
def quickstart(workspace):
    result = run_cli("run", "recipes/quickstart.yaml", "--check", "--json", "--num-proc", "2", cwd=workspace)
    return result


def test_quickstart_reproduces_expected_metrics(quickstart, workspace):
    assert quickstart.code == 0, quickstart.stdout[-3000:] + quickstart.stderr[-2000:]
    payload = quickstart.json()
    assert payload["check_passed"] is True
    assert payload["check"], "the quickstart recipe must state expected metrics"
    run_dir = workspace / "runs" / "quickstart"
    for name in ("recipe.yaml", "env.json", "preprocessing.json", "metrics.json", "checkpoints/best/model.safetensors"):
        assert (run_dir / name).is_file(), name


def test_fused_model_beats_every_single_modality_run_on_scene(quickstart, workspace):
    assert quickstart.code in (0, 1), quickstart.stderr[-2000:]  # 1: trained, but --check out of range
    fused = quickstart.json()["metrics"]["test"]["scene"]["accuracy"]
    singles = {}
    for keep in ALL_INPUTS:
        removed = [f"~inputs.{name}" for name in ALL_INPUTS if name != keep]
        result = run_cli("finetune", "recipes/quickstart.yaml", *removed, f"name=only-{keep}", "--json", cwd=workspace)
        assert result.code == 0, result.stderr[-2000:]
        singles[keep] = result.json()["metrics"]["test"]["scene"]["accuracy"]
    print(json.dumps({"fused": fused, "single": singles}))
    for keep, accuracy in singles.items():
        assert fused >= accuracy + 0.15, f"fused {fused:.3f} vs {keep}-only {accuracy:.3f}"


def test_evaluate_json_is_exactly_one_object(quickstart, workspace):
    result = run_cli("evaluate", "runs/quickstart", "--split", "test", "--json", cwd=workspace)
    assert result.code == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert payload["metrics"]["scene"]["accuracy"] == pytest.approx(quickstart.json()["metrics"]["test"]["scene"]["accuracy"])


def test_preprocess_again_reuses_the_cache(quickstart, workspace):
    result = run_cli("preprocess", "recipes/quickstart.yaml", "--json", cwd=workspace)
    assert result.code == 0, result.stderr[-2000:]
    assert result.json()["reused_cache"] is True
    human = run_cli("preprocess", "recipes/quickstart.yaml", cwd=workspace)
    assert "reused the cache" in human.stdout


def test_robustness_report_degrades_with_noise_and_handles_missing_inputs(quickstart, workspace):
    result = run_cli("evaluate", "runs/quickstart", "--split", "test", "--robustness", "--json", cwd=workspace)
    assert result.code == 0, result.stderr[-2000:]
    report = result.json()["robustness"]
    image_scene = report["inputs"]["image"]["noise"]["scene"]
    assert image_scene[0] == pytest.approx(report["clean"]["scene"])
    assert image_scene[-1] < image_scene[0] - 0.2, "scene needs the image: heavy image noise must hurt"
    for entry in report["inputs"].values():
        assert all(isinstance(v, float) for v in entry["missing"].values()), "every input-missing score is finite"
        assert all(v is not None for v in entry["relative"].values())
    assert (workspace / "runs" / "quickstart" / "plots" / "robustness-test.png").stat().st_size > 1000
