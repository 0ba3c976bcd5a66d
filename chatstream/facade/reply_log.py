"""What the server knows about each recent reply, by message id: whether it is still being
generated, and once it ended its final text, token counts and timing.

The /chat_stream body carries only the cumulative reply text (the original wire format), and its
headers go out before the first token, so a client that wants a reply's statistics, or the exact
text the server kept after it stopped the stream, asks for them afterwards by message id
(`/get_reply_stats`). Both chat generators (the engine-backed one and the mock) keep a `ReplyLog`;
they call `begin` when a reply starts and `end` once its history text is final (after the last
delta, or when the consumer left), so `end` is the moment the text stops changing.

Timing is measured on the server with a monotonic clock: `time_to_first_token_sec` runs from the
moment generation started (the request held a run slot; time spent waiting in the queue is not
included) to the first generated token, `decode_sec` from the first token to the last.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_REPLIES = 1024


@dataclass(frozen=True)
class GenerationRecord:
    """What one finished (or aborted) generation cost, and the reply text it left."""

    message_id: str | None
    num_prompt_tokens: int
    num_cached_tokens: int
    num_output_tokens: int
    finish_reason: str | None
    truncated_prompt: bool
    text: str = ""  # the reply as the client's last chunk shows it (output replacements applied)
    time_to_first_token_sec: float | None = None
    decode_sec: float | None = None
    # The exact ids the engine saw and produced (the end-of-turn token included); empty for the mock.
    prompt_token_ids: tuple[int, ...] = ()
    output_token_ids: tuple[int, ...] = ()
    prompt_source: str | None = None  # "continued" (stored ids + the new turn) or "rendered"

    @property
    def tokens_per_sec(self) -> float | None:
        """Decode speed: the tokens after the first over the time between the first and the last."""
        if self.decode_sec is None or self.decode_sec <= 0 or self.num_output_tokens < 2:
            return None
        return (self.num_output_tokens - 1) / self.decode_sec

    def stats(self) -> dict[str, Any]:
        """The JSON that `/get_reply_stats` answers for this reply."""
        return {
            "num_prompt_tokens": self.num_prompt_tokens, "num_cached_tokens": self.num_cached_tokens,
            "num_output_tokens": self.num_output_tokens, "finish_reason": self.finish_reason,
            "time_to_first_token_sec": _rounded(self.time_to_first_token_sec),
            "decode_sec": _rounded(self.decode_sec), "tokens_per_sec": _rounded(self.tokens_per_sec),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class ReplyTimer:
    """Times one generation: started on creation, `token()` at every delta that brought tokens."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None

    def token(self) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now

    @property
    def time_to_first_token_sec(self) -> float | None:
        return None if self.first is None else self.first - self.started

    @property
    def decode_sec(self) -> float | None:
        return None if self.first is None or self.last is None else self.last - self.first


class ReplyLog:
    """The newest `max_replies` finished replies by message id, and the ids still generating.

    Used from the event loop only (generators run there), so it needs no lock."""

    def __init__(self, max_replies: int = DEFAULT_MAX_REPLIES) -> None:
        self.max_replies = max_replies
        self._running: set[str] = set()
        self._finished: OrderedDict[str, GenerationRecord] = OrderedDict()

    def begin(self, message_id: str | None) -> None:
        if message_id is not None:
            self._running.add(message_id)

    def end(self, record: GenerationRecord) -> None:
        if record.message_id is None:
            return
        self._running.discard(record.message_id)
        self._finished[record.message_id] = record
        self._finished.move_to_end(record.message_id)
        while len(self._finished) > self.max_replies:
            self._finished.popitem(last=False)

    def is_running(self, message_id: str) -> bool:
        return message_id in self._running

    def find(self, message_id: str) -> GenerationRecord | None:
        return self._finished.get(message_id)
