"""A finetune's pictures and log, and the HTML report comparing runs, opened in a real headless browser."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from .conftest import run_cli

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str | None:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None and os.environ.get("MMCLI_REQUIRE_BROWSER"):
        pytest.fail("MMCLI_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
    return found


def test_finetune_leaves_a_log_learning_curves_and_confusion_matrices(small_run):
    log = (small_run / "run.log").read_text()
    assert "epoch 1" in log and "epoch 2" in log and "test" in log
    for name in ("learning-curves.png", "confusion-test-scene.png", "confusion-validation-scene.png"):
        with Image.open(small_run / "plots" / name) as image:
            assert image.width >= 600 and image.height >= 300, name
            # a picture, not a blank canvas: many distinct colours
            assert len(image.convert("RGB").getcolors(1 << 20)) > 50, name


def test_report_is_one_self_contained_page_a_browser_renders(small_workspace, small_run, tmp_path):
    second = small_workspace / "runs" / "small-copy"
    if not second.exists():
        shutil.copytree(small_run, second)
        recipe = second / "recipe.yaml"
        recipe.write_text(recipe.read_text().replace("epochs: 2", "epochs: 3"))
        # a run of three epochs that learns faster: its curves must differ from the first run's
        history = [json.loads(line) for line in (second / "history.jsonl").read_text().splitlines()]
        history.append({**history[-1], "epoch": 3, "step": 2 * history[-1]["step"] - history[0]["step"]})
        for record in history:
            record["train_loss"] *= 0.8
            record["validation_loss"] *= 0.8
            record["validation"]["scene"]["accuracy"] = min(1.0, record["validation"]["scene"]["accuracy"] + 0.1 * record["epoch"])
        (second / "history.jsonl").write_text("".join(json.dumps(record) + "\n" for record in history))
    page = tmp_path / "report.html"
    result = run_cli("report", str(small_run), str(second), "-o", str(page), "--json", cwd=small_workspace)
    assert result.code == 0, result.stderr[-2000:]
    assert result.json()["output"] == str(page)
    again = run_cli("report", str(small_run), "-o", str(page), cwd=small_workspace)
    assert again.code == 2 and "--overwrite" in again.stderr  # a file of the user's is never replaced unasked
    text = page.read_text()
    assert text.count("<img") >= 6 and "data:image/png;base64," in text
    assert "src=\"http" not in text and "href=\"http" not in text  # nothing fetched from outside
    assert "-  epochs: 2" in text.replace("&quot;", '"') or "epochs: 2" in text  # the recipe diff
    assert "accuracy" in text and "small-copy" in text

    # learning curves: one chart per metric with every run on it, readable, before the confusion matrices
    charts = re.findall(r'<figure class="chart" data-metric="([^"]+)" data-runs="([^"]+)"><img[^>]* src="data:image/png;base64,([^"]+)"', text)
    metrics = [metric for metric, _, _ in charts]
    assert metrics[:2] == ["train_loss", "validation_loss"] and len(metrics) == len(set(metrics))
    assert {"validation/scene/accuracy", "validation/motion/f1", "validation/size/mae"} <= set(metrics)
    for metric, runs, png in charts:
        assert runs == "small, small-copy", metric
        with Image.open(io.BytesIO(base64.b64decode(png))) as chart:
            assert chart.width >= 700 and chart.height >= 350, (metric, chart.size)
    assert text.index('class="chart"') < text.index('alt="confusion-')
    assert 'alt="learning-curves"' not in text  # the per-run thumbnail the charts replace

    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine; .ci/run installs it")
    shot = tmp_path / "report.png"
    profile = tmp_path / "profile"
    completed = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1400,2000",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    assert shot.is_file(), completed.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (1400, 2000)
        colours = image.convert("RGB").getcolors(1 << 22)
    # rendered tables and embedded plots, not an empty or error page
    assert colours is not None and len(colours) > 200
