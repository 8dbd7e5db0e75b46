"""Regression task: one standardised value per row, MSE, MAE/RMSE in original units; its target codec
(values standardised with the train split's mean and standard deviation)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mmcli.cells import is_missing
from mmcli.errors import BadValue
from mmcli.objectives._supervised import HeadSettings, HeadTask, zero_loss
from mmcli.registries import OBJECTIVES


def _as_float(value: Any) -> float:
    if is_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        raise BadValue(f"regression target is not a number: {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadValue(f"regression target is not a number: {value!r}") from None
    return number if math.isfinite(number) else math.nan


def _as_float_or_nan(value: Any) -> float:
    try:
        return _as_float(value)
    except BadValue:
        return math.nan


class RegressionLabels:
    """float32 ``(y - mean) / std``; NaN = no label (missing or not finite)."""

    missing = math.nan
    dtype = np.float32

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = float(mean)
        self.std = float(std)

    def fit(self, values: Iterable[Any]) -> "RegressionLabels":
        # A value that is not a number is a bad row: encode() reports it (fail or skip); fit ignores it.
        data = np.asarray([_as_float_or_nan(v) for v in values], dtype=np.float64)
        data = data[np.isfinite(data)]
        self.mean = float(data.mean()) if data.size else 0.0
        std = float(data.std()) if data.size else 0.0
        self.std = std if std > 1e-12 else 1.0  # a constant target must not divide by zero
        return self

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        data = np.asarray([_as_float(v) for v in values], dtype=np.float64)
        return ((data - self.mean) / self.std).astype(np.float32)

    def labelled(self, encoded: np.ndarray) -> np.ndarray:
        return ~np.isnan(np.asarray(encoded, dtype=np.float64))

    def decode(self, values: Any) -> np.ndarray:
        """Standardised values back to original units (float64)."""
        return np.asarray(values, dtype=np.float64) * self.std + self.mean

    def spec(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    @staticmethod
    def feature() -> Any:
        from datasets import Value

        return Value("float32")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "RegressionLabels":
        return cls(spec["mean"], spec["std"])


class RegressionConfig(HeadSettings):
    type: Literal["regression"] = "regression"

    def target_codec(self, spec: dict | None = None) -> RegressionLabels:
        return RegressionLabels.from_spec(spec) if spec is not None else RegressionLabels()


@OBJECTIVES.register("regression", RegressionConfig)
class RegressionObjective(HeadTask):
    """Spec: ``{"mean": m, "std": s}``. Prediction: values ``[B]`` (standardised); targets float ``[B]``
    standardised, NaN = no label."""

    metrics = {"mae": False, "rmse": False}
    main_metric = "mae"

    def configure(self, config: RegressionConfig, spec: dict) -> None:
        self.mean = float(spec["mean"])
        self.std = float(spec["std"])

    def out_features(self) -> int:
        return 1

    def finish(self, raw: Tensor) -> Tensor:
        return raw.squeeze(-1)

    def prediction_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """MSE in standardised units over rows with a label: ``[B]``, ``[B]`` -> scalar."""
        labelled = ~torch.isnan(target)
        if not labelled.any():
            return zero_loss(prediction)
        return F.mse_loss(prediction[labelled].float(), target[labelled].float())

    def row_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``[B]`` squared error per row, 0 where there is no label."""
        labelled = ~torch.isnan(target)
        return (prediction.float() - torch.nan_to_num(target.float())).square() * labelled

    @torch.no_grad()
    def prior(self, target: Tensor) -> Tensor:
        """``[]``: the mean of ``target``'s labelled rows (standardised; 0 without labels), the constant
        prediction with the lowest mean squared error."""
        labelled = target[~torch.isnan(target)].float()
        return labelled.mean() if len(labelled) else torch.zeros(())

    @staticmethod
    def labelled(target: Tensor) -> Tensor:
        return ~torch.isnan(target)

    @staticmethod
    def average(predictions: list[Tensor]) -> Tensor:
        """The ensemble's prediction: the mean of the predictions."""
        return torch.stack([p.float() for p in predictions]).mean(dim=0)

    def readout(self, prediction: Tensor) -> Tensor:
        return prediction.float() * self.std + self.mean

    def _original(self, values: Tensor) -> list[float]:
        return self.readout(values).cpu().tolist()

    @torch.no_grad()
    def decode(self, prediction: Tensor) -> list[dict[str, Any]]:
        """``[B]`` -> per row ``{"value": float}`` in the target column's units."""
        return [{"value": value} for value in self._original(prediction)]

    @torch.no_grad()
    def metric_inputs(self, prediction: Tensor, target: Tensor) -> tuple[list[float], list[float]]:
        """Predicted and true values in original units, rows without a label dropped."""
        labelled = ~torch.isnan(target)
        return self._original(prediction[labelled]), self._original(target[labelled])
