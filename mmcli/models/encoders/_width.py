"""An encoder's own width: ``inputs.NAME.encoder.width`` builds the encoder at that width and the
backbone maps its outputs to ``model.hidden_size`` (what the fusion, the attention block and the
objectives read), so a large image tower and a small text tower can sit side by side."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor, nn

from mmcli.models.outputs import EncoderOutput
from mmcli.settings import Settings


class EncoderSettings(Settings):
    """Fields every encoder has; a registered encoder adds ``type: Literal[name]`` and its own."""

    width: int | None = Field(None, ge=4, description="the encoder's own width (default: model.hidden_size); a "
                                                      "linear layer maps its tokens and vector to model.hidden_size")


class ToHidden(nn.Module):
    """``encoder`` (built at ``width``) followed by one ``Linear(width, hidden_size)`` on its tokens and its
    pooled vector; a missing row keeps the mapped "missing" vector, padded tokens stay zero."""

    def __init__(self, encoder: nn.Module, width: int, hidden_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.to_hidden = nn.Linear(width, hidden_size)

    @property
    def missing(self) -> Tensor:
        return self.to_hidden(self.encoder.missing)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:  # the encoder's own attributes (frozen, precompute, ...) read through the wrapper
            return getattr(super().__getattr__("encoder"), name)

    def forward(self, x: Tensor, mask: Tensor) -> EncoderOutput:
        out = self.encoder(x, mask)
        tokens = self.to_hidden(out.tokens).masked_fill(~out.mask.unsqueeze(-1), 0.0)
        return EncoderOutput(tokens=tokens, mask=out.mask, pooled=self.to_hidden(out.pooled))
