"""Inference wrappers: plug-ins that change what a trained model answers (never how it trains).

A wrapper sits in ``model.wrappers`` (so its buffers are saved with the checkpoint) and may act at
two points of :func:`mmcli.inference.predictor.infer_batch`: on the encodings before they are
fused, and on the supervised objectives' predictions. Each returns a per-row report (name ->
``[B]`` tensor) that inference concatenates over a split; the wrapper turns it into counts for
``metrics.json``, fields of each predicted row, and the rows it treated otherwise than usual (for
``evaluate --robustness``). Nothing in the backbone, the objectives or the trainer calls a wrapper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput

if TYPE_CHECKING:
    from mmcli.models.representation import Representation


class InferenceWrapper(nn.Module):
    """``key``: the name under which its report appears in metrics and predictions."""

    key = "wrapper"

    def before_fusion(self, model: nn.Module, encoded: dict[str, EncoderOutput], batch: dict[str, Tensor]
                      ) -> tuple[dict[str, EncoderOutput], dict[str, Tensor]]:
        return encoded, {}

    def after_prediction(self, model: nn.Module, rep: "Representation", predictions: dict[str, Tensor]
                         ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return predictions, {}

    def summarize(self, report: dict[str, Tensor]) -> dict[str, Any]:
        """JSON-able counts over a split's rows (``metrics.json``, per split)."""
        return {}

    def row_fields(self, report: dict[str, Tensor], row: int) -> dict[str, Any]:
        """JSON-able fields added to predicted row ``row``."""
        return {}

    def unusual_rows(self, report: dict[str, Tensor]) -> dict[str, Tensor]:
        """name -> ``[N]`` bool: rows answered otherwise than a row with every input present is."""
        return {}
