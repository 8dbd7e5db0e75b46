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


SAMPLES = {
    "accuracy": ([0, 1, 2, 1], [0, 2, 2, 1]), "f1": ([0, 1, 2, 1], [0, 2, 2, 1]),
    "mae": ([1.0, 2.5, 3.0], [1.5, 2.0, 3.0]), "rmse": ([1.0, 2.5, 3.0], [1.5, 2.0, 3.0]),
    "bleu": (["a red circle moves left", "a blue square"], ["a red circle moving left", "the blue square"]),
    "chrf": (["a red circle moves left", "a blue square"], ["a red circle moving left", "the blue square"]),
    "rouge_l": (["a red circle moves left", "a blue square"], ["a red circle moving left", "the blue square"]),
    "cider": (["a red circle moves left", "a blue square"], ["a red circle moving left", "the blue square"]),
    "vqa_accuracy": (["Two", "red"], ["2", "blue"]),
    "retrieval": ([[3, 1, 2], [0, 2]], [[1], [9]]),
    "mean_average_precision": ([[0.9, 0.1], [0.2, 0.7], [0.6, 0.4]], [[1, 0], [0, 1], [1, 1]]),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_evaluate_module_loaded_by_path_gives_what_mmcli_computes(name: str) -> None:
    """mmcli scores without importing evaluate; the evaluate modules it ships must give the same numbers."""
    import math

    from mmcli.evaluation.metrics_loader import compute_metric_values, load_metric

    predictions, references = SAMPLES[name]
    ours = compute_metric_values(name, predictions, references)
    theirs = load_metric(name).compute(predictions=predictions, references=references,
                                       **({"average": "macro"} if name == "f1" else {}))
    assert set(ours) == set(theirs)
    for key, value in ours.items():
        if isinstance(value, list):
            assert value == pytest.approx(theirs[key], nan_ok=True), key
        else:
            assert value == pytest.approx(theirs[key]) or (math.isnan(value) and math.isnan(theirs[key])), key


def test_scoring_does_not_import_evaluate() -> None:
    import subprocess
    import sys

    code = ("import sys; from mmcli.evaluation.metrics_loader import compute_metrics; "
            "compute_metrics(['accuracy', 'bleu'], ['a'], ['a']); print('evaluate' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_f1_equals_scikit_learn_on_random_labels(average: str) -> None:
    from mmcli.evaluation.metrics_loader import compute_metric_values

    generator = np.random.default_rng(7)
    for _ in range(20):
        true, predicted = generator.integers(0, 5, 40), generator.integers(0, 6, 40)  # a class only predicted
        expected = f1_score(true, predicted, average=average, zero_division=0)
        assert compute_metric_values("f1", predicted, true, average=average)["f1"] == pytest.approx(expected)
    assert compute_metric_values("f1", ["a", "b", "b"], ["a", "a", "b"])["f1"] == pytest.approx(
        f1_score(["a", "a", "b"], ["a", "b", "b"], average="macro"))
    binary = generator.integers(0, 2, 30), generator.integers(0, 2, 30)
    assert compute_metric_values("f1", binary[0], binary[1], average="binary")["f1"] == pytest.approx(
        f1_score(binary[1], binary[0], average="binary"))
