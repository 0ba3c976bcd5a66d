"""The original ChatStream's reply formats, shared by every chat generator (engine-backed or mock).

A chat generator streams one reply as a sequence of cumulative texts. What a consumer receives
depends on the `output_type` option of `generate()`:

- `"response_text"`: the whole reply so far followed by `DEFAULT_FINISH_TOKEN` (the /chat_stream wire
  format: several chunks may arrive merged, so a client splits on the token and shows the last
  complete segment);
- `"updated_text"`: only the text added since the previous chunk;
- `None`: the tuple `(response_text + DEFAULT_FINISH_TOKEN, updated_text, pos)` with `pos` "begin"
  for the first chunk, "mid" afterwards and "end" for the last (the console format).

The last chunk always carries the final text (the original swapped the tuple's first two items on
the last yield; we keep one order).
"""

from __future__ import annotations

from typing import Any

DEFAULT_FINISH_TOKEN = "<::EOS::>"

OUTPUT_TYPES = ("response_text", "updated_text", None)


class ReplyFormatter:
    """Turns successive cumulative reply texts into the chunks of one `output_type`."""

    def __init__(self, output_type: str | None = "response_text") -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        self.output_type = output_type
        self._sent = ""
        self._started = False

    def chunk(self, response_text: str, last: bool = False) -> Any:
        """The chunk for the reply text so far; `last=True` for the final chunk of the reply."""
        # A cumulative text that is not an extension of what was sent (e.g. a trailing space that
        # `strip()` removed once more text arrived) sends no delta for the changed part.
        updated = response_text[len(self._sent):] if response_text.startswith(self._sent) else ""
        self._sent = response_text
        pos = "end" if last else ("mid" if self._started else "begin")
        self._started = True
        if self.output_type == "response_text":
            return response_text + DEFAULT_FINISH_TOKEN
        if self.output_type == "updated_text":
            return updated
        return response_text + DEFAULT_FINISH_TOKEN, updated, pos
