"""Regression task: one standardised value per row, MSE, MAE/RMSE in original units."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from mmcli.data.processors.labels import RegressionLabels
from mmcli.objectives._supervised import SupervisedObjective, SupervisedSettings, zero_loss
from mmcli.registries import OBJECTIVES


class RegressionConfig(SupervisedSettings):
    type: Literal["regression"] = "regression"

    def target_codec(self, spec: dict | None = None) -> RegressionLabels:
        return RegressionLabels.from_spec(spec) if spec is not None else RegressionLabels()


@OBJECTIVES.register("regression", RegressionConfig)
class RegressionObjective(SupervisedObjective):
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
