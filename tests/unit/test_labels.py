from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmcli.data.processors.base import MediaError
from mmcli.objectives.classification import ClassificationLabels, UnknownLabel
from mmcli.objectives.regression import RegressionLabels


def test_classification_fit_encode_decode() -> None:
    labels = ClassificationLabels().fit(["cat", "dog", None, "cat", float("nan"), "", "bird"])
    assert labels.classes == ["bird", "cat", "dog"] and labels.num_classes == 3
    codes = labels.encode(["dog", None, "bird", float("nan")])
    assert codes.dtype == np.int64 and codes.tolist() == [2, -100, 0, -100]
    assert labels.decode([2, 0]) == ["dog", "bird"]


def test_unknown_label() -> None:
    labels = ClassificationLabels().fit(["a", "b"])
    with pytest.raises(UnknownLabel, match="unknown label 'z'") as info:
        labels.encode(["a", "z"])
    assert isinstance(info.value, MediaError) and info.value.value == "z"
    assert labels.encode(["a", "z"], unknown="missing").tolist() == [0, -100]


def test_numeric_labels_are_stable_names() -> None:
    # pandas reads an int column with gaps as floats: 1.0 must still be class "1"; order is numeric.
    labels = ClassificationLabels().fit([10, 2, 1.0, np.int64(2)])
    assert labels.classes == ["1", "2", "10"]
    assert labels.encode([1, 2.0, "10", np.float64(1.0)]).tolist() == [0, 1, 2, 0]


def test_classification_spec_round_trip() -> None:
    labels = ClassificationLabels().fit(["x", "y"])
    spec = json.loads(json.dumps(labels.spec()))
    assert spec == {"classes": ["x", "y"]}
    again = ClassificationLabels.from_spec(spec)
    assert again.encode(["y", "x"]).tolist() == [1, 0]


def test_regression() -> None:
    reg = RegressionLabels().fit([1.0, 3.0, None, float("inf"), "", "5"])
    assert reg.mean == pytest.approx(3.0) and reg.std == pytest.approx(np.std([1, 3, 5]))
    enc = reg.encode([3.0, 5, None, float("nan"), float("-inf")])
    assert enc.dtype == np.float32
    assert enc[0] == 0 and enc[1] == pytest.approx(2 / reg.std)
    assert all(math.isnan(v) for v in enc[2:])
    np.testing.assert_allclose(reg.decode(reg.encode([1.0, 7.5])), [1.0, 7.5], rtol=1e-6)
    with pytest.raises(MediaError, match="not a number"):
        reg.encode(["abc"])


def test_regression_constant_and_spec() -> None:
    reg = RegressionLabels().fit([4.0, 4.0])
    assert reg.std == 1.0 and reg.encode([4.0]).tolist() == [0.0]
    spec = json.loads(json.dumps(RegressionLabels().fit([1, 2, 3]).spec()))
    assert set(spec) == {"mean", "std"}
    again = RegressionLabels.from_spec(spec)
    assert again.encode([2]).tolist() == [0.0]
