"""Incremental detokenization of one request's output, with stop-string handling.

Owns: turning the stream of generated token ids into text a step at a time without ever splitting a UTF-8 character,
finding stop strings in that text (even when they straddle tokens), and deciding which part of the text is safe to
stream. It runs once per token per request inside the engine loop, so every step costs O(new text), never O(total text)
nor O(stop-string length): stop strings are matched by an automaton (`stop_strings.StopStringMatcher`) whose state
also says how much text could still become a stop string and must be held back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tokenizers.decoders import DecodeStream

from chatstream.engine.stop_strings import StopStringMatcher

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.engine.sampling_params import SamplingParams

# Prompt tokens decoded as context before the first output token: decoders that drop the leading space of the first
# token (SentencePiece's "▁") would otherwise eat the space that starts the completion.
PROMPT_CONTEXT_TOKENS = 5
_REPLACEMENT_CHAR = "\ufffd"


class _TokenDecoder(Protocol):
    def step(self, token_id: int) -> str: ...  # text made final by this token ("" while bytes are incomplete)
    def flush(self) -> str: ...  # whatever is still held, even if it ends in an incomplete character


class _OffsetDecoder:
    """Works with any tokenizer: decodes a short window of ids twice (with and without the newest tokens) and emits the
    difference once it no longer ends in U+FFFD. Only the last emitted chunk's ids (the context that makes the diff
    exact) and the not yet emitted ids are kept, so the window stays small."""

    def __init__(self, decode: Callable[[list[int]], str], context_ids: list[int], pending_ids: Sequence[int] = ()):
        self._decode = decode
        self._ids = list(context_ids) + list(pending_ids)
        self._read_offset = len(context_ids)  # ids before this are already in the output text
        self._prefix_text = decode(self._ids[: self._read_offset])

    def step(self, token_id: int) -> str:
        self._ids.append(token_id)
        text = self._decode(self._ids)
        if len(text) <= len(self._prefix_text) or text.endswith(_REPLACEMENT_CHAR):
            return ""  # an incomplete character (or a token with no text yet): wait for more ids
        return self._emit(text)

    def flush(self) -> str:
        if self._read_offset == len(self._ids):
            return ""
        return self._emit(self._decode(self._ids))

    def _emit(self, text: str) -> str:
        new_text = text[len(self._prefix_text) :]
        # The ids just emitted become the context of the next window; older ids are no longer needed.
        del self._ids[: self._read_offset]
        self._read_offset = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return new_text


class _StreamDecoder:
    """Fast tokenizers: the Rust `DecodeStream` does the same windowing natively. We shadow its window ids so we can
    flush held bytes at the end and fall back to `_OffsetDecoder` if it rejects a (garbled) sequence."""

    def __init__(self, backend: Any, context_ids: list[int], skip_special_tokens: bool):
        self._backend = backend
        self._skip = skip_special_tokens
        self._stream = DecodeStream(context_ids, skip_special_tokens=skip_special_tokens)
        self._context = list(context_ids)
        self._pending: list[int] = []
        self._fallback: _OffsetDecoder | None = None

    def _decode(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=self._skip)

    def step(self, token_id: int) -> str:
        if self._fallback is not None:
            return self._fallback.step(token_id)
        try:
            chunk = self._stream.step(self._backend, token_id)
        except Exception:
            # DecodeStream raises when a new id rewrites already-emitted text (e.g. invalid byte-fallback runs). Such
            # sequences are garbage anyway; keep going with the length-based diff, which never raises.
            self._fallback = _OffsetDecoder(self._decode, self._context, self._pending)
            return self._fallback.step(token_id)
        self._pending.append(token_id)
        if chunk is None:
            return ""
        self._context, self._pending = self._pending, []
        return chunk

    def flush(self) -> str:
        if self._fallback is not None:
            return self._fallback.flush()
        if not self._pending:
            return ""
        return _OffsetDecoder(self._decode, self._context, self._pending).flush()


def _make_token_decoder(
    tokenizer: PreTrainedTokenizerBase, prompt_token_ids: Sequence[int], skip: bool
) -> _TokenDecoder:
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:

        def decode(ids: list[int]) -> str:
            return backend.decode(ids, skip_special_tokens=skip)

    else:

        def decode(ids: list[int]) -> str:
            tokens = tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=skip)
            return tokenizer.convert_tokens_to_string(tokens) if tokens else ""

    context = [int(i) for i in prompt_token_ids[-PROMPT_CONTEXT_TOKENS:]]
    if decode(context).endswith(_REPLACEMENT_CHAR):
        context = []  # the prompt ends mid-character; such a context would make every later diff misaligned
    if backend is not None:
        return _StreamDecoder(backend, context, skip)
    return _OffsetDecoder(decode, context)


class IncrementalDetokenizer:
    """Output text of one request, grown token by token.

    `update()` appends decoded text and checks stop strings in the new region only; `take_delta()` hands out the part of
    the text that can no longer change. The text is kept as a list of chunks so appending never copies the whole text.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, prompt_token_ids: Sequence[int], params: SamplingParams
    ) -> None:
        self._decoder = _make_token_decoder(tokenizer, prompt_token_ids, params.skip_special_tokens)
        stop = params.stop
        stops = [s for s in ([stop] if isinstance(stop, str) else stop or []) if s]
        # Built here, on the engine thread, in time and memory linear in the stop strings' total length (which
        # SamplingParams bounds).
        self._matcher = StopStringMatcher(stops) if stops else None
        self._include_stop = params.include_stop_str_in_output
        # Like the engine's other stop conditions, stop strings only count once min_tokens tokens exist: one that
        # completes in the text of an earlier token is not a stop.
        self._min_tokens = params.min_tokens
        self._num_tokens = 0
        # Ids no tokenizer can decode (padded model vocab) are skipped rather than crashing the slow path.
        self._vocab_limit = None if isinstance(self._decoder, _StreamDecoder) else len(tokenizer)
        self._chunks: list[str] = []
        self._length = 0
        self._joined: str | None = ""
        self._sent = 0  # chars already handed out by take_delta
        self._stopped = False  # a stop string was found: the text is final
        self._flushed = False

    @property
    def output_text(self) -> str:
        if self._joined is None:
            self._joined = "".join(self._chunks)
            self._chunks = [self._joined] if self._joined else []
        return self._joined

    def update(self, new_token_ids: Sequence[int]) -> str | None:
        """Decode `new_token_ids` and append their text. Returns the stop string if one completed (the text is then
        cut before it, or after it with include_stop_str_in_output); later calls are ignored."""
        if self._stopped:
            return None
        self._num_tokens += len(new_token_ids)
        pieces = []
        for token_id in new_token_ids:
            token_id = int(token_id)
            if token_id < 0 or (self._vocab_limit is not None and token_id >= self._vocab_limit):
                continue
            pieces.append(self._decoder.step(token_id))
        return self._append("".join(pieces))

    def take_delta(self, finished: bool) -> str:
        """Text not handed out yet that can no longer change. With finished=True everything left is released,
        except the bytes of a final character that the last token left incomplete (e.g. max_tokens cut an emoji
        in half): a full decode would show them as U+FFFD, a broken character we never emit."""
        if finished and not self._stopped and not self._flushed:
            self._flushed = True
            self._append(self._decoder.flush().rstrip("\ufffd"))
        end = self._length
        if not finished and not self._include_stop:
            # With include_stop_str_in_output nothing is ever cut before the stop, so there is no need to hold back.
            end -= self._stop_prefix_len()
        if end <= self._sent:
            return ""
        delta = self._suffix(self._length - self._sent)[: end - self._sent]
        self._sent = end
        return delta

    def _append(self, new_text: str) -> str | None:
        if not new_text:
            return None
        old_length = self._length
        self._chunks.append(new_text)
        self._length += len(new_text)
        self._joined = None
        if self._matcher is None:
            return None
        counts = self._num_tokens >= self._min_tokens
        found = self._matcher.feed(new_text)
        while found is not None and not counts:  # too early to stop: read on, the automaton keeps its state
            found = self._matcher.feed(new_text, found[0])
        if found is None:
            return None
        # The first stop string to complete wins (of those completing together, the longest).
        end, stop = found
        end += old_length
        self._truncate(end if self._include_stop else end - len(stop))
        self._stopped = True
        return stop

    def _suffix(self, n: int) -> str:
        """The last n chars of the text, touching only the chunks that hold them."""
        n = min(n, self._length)
        if n <= 0:
            return ""
        parts: list[str] = []
        total = 0
        for chunk in reversed(self._chunks):
            parts.append(chunk)
            total += len(chunk)
            if total >= n:
                break
        text = "".join(reversed(parts))
        return text[len(text) - n :]

    def _truncate(self, length: int) -> None:
        while self._chunks and self._length - len(self._chunks[-1]) >= length:
            self._length -= len(self._chunks.pop())
        if self._length > length:
            keep = len(self._chunks[-1]) - (self._length - length)
            self._chunks[-1] = self._chunks[-1][:keep]
            self._length = length
        self._joined = None

    def _stop_prefix_len(self) -> int:
        """Length of the longest tail of the unsent text that could still grow into a stop string."""
        if self._matcher is None:
            return 0
        return min(self._matcher.hold_back, self._length - self._sent)
