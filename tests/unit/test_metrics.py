from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from mmcli.evaluation.metrics_loader import METRICS_DIR, available_metrics, compute_metrics

PRED = [0, 1, 2, 2, 1, 0, 1]
REF = [0, 2, 2, 2, 1, 1, 1]


def test_bundled_modules_present() -> None:
    assert available_metrics() == [
        "accuracy", "bleu", "chrf", "cider", "f1", "mae", "mean_average_precision", "retrieval", "rmse", "rouge_l", "vqa_accuracy",
    ]


def test_one_import_per_line() -> None:
    # evaluate resolves a module's dependencies with a line regex; "import a, b" would break it.
    for script in METRICS_DIR.glob("*/*.py"):
        for line in script.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                assert "," not in line, f"{script.name}: {line}"


def test_classification_metrics_match_sklearn() -> None:
    got = compute_metrics(["accuracy", "f1"], np.array(PRED), np.array(REF))
    assert got["accuracy"] == pytest.approx(accuracy_score(REF, PRED))
    assert got["f1"] == pytest.approx(f1_score(REF, PRED, average="macro"))
    names = compute_metrics(["accuracy", "f1"], ["cat", "dog", "dog"], ["cat", "cat", "dog"])
    assert names["accuracy"] == pytest.approx(2 / 3)
    assert names["f1"] == pytest.approx(f1_score(["cat", "cat", "dog"], ["cat", "dog", "dog"], average="macro"))


def test_regression_metrics_match_sklearn() -> None:
    pred, ref = [1.0, 2.5, -3.0, 4.0], [1.5, 2.0, -1.0, 4.0]
    got = compute_metrics(["mae", "rmse"], pred, ref)
    assert got["mae"] == pytest.approx(mean_absolute_error(ref, pred))
    assert got["rmse"] == pytest.approx(math.sqrt(mean_squared_error(ref, pred)))


def test_edge_cases() -> None:
    assert all(math.isnan(v) for v in compute_metrics(["accuracy", "mae"], [], []).values())
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(["no_such_metric"], [1], [1])
    with pytest.raises(ValueError, match="references"):
        compute_metrics(["accuracy"], [1, 2], [1])


def test_loads_offline(tmp_path: Path) -> None:
    # A fresh process with the Hub disabled and an empty cache: loading by path must not need the network.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "import json; from mmcli.evaluation.metrics_loader import compute_metrics; "
        "print(json.dumps(compute_metrics(['accuracy', 'f1', 'mae', 'rmse'], [1, 0, 1], [1, 1, 1])))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["accuracy"] == pytest.approx(2 / 3) and got["mae"] == pytest.approx(1 / 3)
