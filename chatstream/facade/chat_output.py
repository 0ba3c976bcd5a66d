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

`ChatReplyGenerator` is the contract both generators keep, and `GenerateOptions` the original's
`opts` dict they take.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt

DEFAULT_FINISH_TOKEN = "<::EOS::>"
# A /chat_stream reply that could not be finished (the engine failed, the request failed in it,
# the server shut down) ends with one more segment: the reply so far, this marker, why, and the
# finish token. Clients that show the last segment show the reply and the reason after it;
# clients that know the marker split on it.
ERROR_MARKER = "<::ERROR::>"

OUTPUT_TYPES = ("response_text", "updated_text", None)

# "response_text" and "updated_text" chunks are strings; the console's are (response, update, pos).
ReplyChunk = str | tuple[str, str, str]


class GenerateOptions(TypedDict, total=False):
    """The `opts` of `generate()`: every key may be left out.

    output_type: one of OUTPUT_TYPES (default "response_text"). message_id: set on the reply in
    the history (and names the engine request). generation_params: a session's overrides of
    `ChatStream.params`. post_process_callback: awaited with "success" after the last chunk.
    prompt_token_ids: the prompt as token ids, continued from a stored conversation's ids (the
    engine-backed generator uses them when they fit the context, else renders the prompt).
    """

    output_type: str | None
    message_id: str | None
    generation_params: dict[str, Any] | None
    post_process_callback: Callable[[str], Awaitable[object]] | None
    prompt_token_ids: list[int] | None


class ChatReplyGenerator(Protocol):
    """Writes the open responder turn of a ChatPrompt, streaming it in an `output_type`'s chunks.

    prepare(): runs the ChatPrompt's hooks and decides everything before streaming (raises
    `PromptHookError` for a failing hook); prepare_off_loop() is the same, off the event loop for
    big histories. stream(prepared): updates the prompt's last responder
    message as the reply grows (so a reply cut short stays in the history). generate() is
    `stream(prepare(...))`. abort(message_id): stops that reply (idempotent).
    """

    def prepare(self, chat_prompt: AbstractChatPrompt, opts: GenerateOptions | None = None) -> object: ...

    async def prepare_off_loop(self, chat_prompt: AbstractChatPrompt, opts: GenerateOptions | None = None) -> object: ...

    def stream(self, reply: Any) -> AsyncIterator[ReplyChunk]: ...

    def generate(self, chat_prompt: AbstractChatPrompt,
                 opts: GenerateOptions | None = None) -> AsyncIterator[ReplyChunk]: ...

    def abort(self, message_id: str) -> None: ...


def error_segment(last_chunk: str | None, reason: str) -> str:
    """The final /chat_stream segment of a reply cut short: the text of `last_chunk` (the last
    segment sent, if any), `ERROR_MARKER`, `reason`, `DEFAULT_FINISH_TOKEN`."""
    text = ""
    if last_chunk:
        text = last_chunk.split(DEFAULT_FINISH_TOKEN)[-2] if last_chunk.endswith(DEFAULT_FINISH_TOKEN) else ""
    return f"{text}{ERROR_MARKER}{reason}{DEFAULT_FINISH_TOKEN}"


class ReplyFormatter:
    """Turns successive cumulative reply texts into the chunks of one `output_type`."""

    def __init__(self, output_type: str | None = "response_text") -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        self.output_type = output_type
        self._sent = ""
        self._started = False

    def chunk(self, response_text: str, last: bool = False) -> ReplyChunk:
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
