"""Generated text as it comes: a ``transformers`` streamer that hands each finished piece of text (whole
words, decoded without special tokens) to a callback, for a terminal or a server-sent event stream."""

from __future__ import annotations

from typing import Any, Callable


def text_streamer(tokenizer: Any, on_text: Callable[[str], None]) -> Any:
    """A streamer for ``generate(streamer=...)`` (one row at a time) that skips the prompt."""
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
