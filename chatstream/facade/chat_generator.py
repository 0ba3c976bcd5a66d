"""The engine-backed chat generator: one ChatPrompt turn in, the reply streamed out.

`ChatGenerator.generate(chat_prompt, opts)` renders the prompt, tokenizes it, sends the token ids
with `SamplingParams` to the `AsyncEngine`, and streams the reply in the original's formats
(`chatstream.facade.chat_output`). It sits between the facade (chat semantics) and the engine (tokens).
It runs in two parts: `prepare` (the ChatPrompt's hooks, tokenization, parameters: everything that
can fail because of a user's prompt class, decided before a response starts) and `stream`.


- The engine decodes only the generated ids, incrementally, and cuts stop strings there, so no
  echo of the prompt is ever sliced off by character count and stop strings already present in
  the history cannot end a reply.
- The history keeps the model-native text (e.g. rinna's "<NL>"), updated after every delta, so a
  reply cut short by a disconnect is kept; the client sees the text after the output replacement
  rules, without flicker.
- Leaving the iteration early (client gone) closes the engine stream, which aborts the request in
  the engine before its next step.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatstream.facade.chat_output import GenerateOptions, ReplyChunk, ReplyFormatter
from chatstream.facade.generation_params import merge_params, to_sampling_params
from chatstream.facade.offload import Offload
from chatstream.facade.output_replacement import visible_reply
from chatstream.facade.prompt_bounds import PromptMeasure
from chatstream.facade.prompt_hooks import HookResultError, checked_pairs, checked_strings, prompt_hooks
from chatstream.facade.reply_log import GenerationRecord, ReplyLog, ReplyTimer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.engine.engine_client import EngineClient
    from chatstream.engine.sampling_params import SamplingParams

__all__ = ["ChatGenerator", "GenerationRecord", "PreparedReply"]


@dataclass(frozen=True)
class PreparedReply:
    """One reply, ready to stream: what `ChatGenerator.prepare` decided."""

    chat_prompt: AbstractChatPrompt
    formatter: ReplyFormatter
    message_id: str | None
    ids: list[int]
    truncated: bool
    sampling: SamplingParams
    replacements: list[tuple[str, str]] | None
    request_id: str
    post_process_callback: Callable[[str], Awaitable[object]] | None
    source: str = "rendered"  # "continued": the ids are the stored conversation's, extended by the new turn


def _first(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """The smallest n in [low, high] with ok(n), for ok monotone (False... True); high if none."""
    while low < high:
        middle = (low + high) // 2
        if ok(middle):
            high = middle
        else:
            low = middle + 1
    return low


class ChatGenerator:
    """Streams ChatPrompt replies from an `AsyncEngine`."""

    def __init__(self, engine: EngineClient, tokenizer: PreTrainedTokenizerBase, params: dict[str, Any],
                 logger: logging.Logger, token_sampler: object | None = None, offload: Offload | None = None) -> None:
        self.engine = engine
        self.offload = offload  # big prompts are rendered and tokenized there, off the event loop
        self.measure = PromptMeasure(tokenizer)
        self.token_sampler = token_sampler  # a preset of chatstream.facade.token_samplers adjusts each request
        self.tokenizer = tokenizer
        self.params = params
        self.logger = logger
        self.records: deque[GenerationRecord] = deque(maxlen=256)
        self.replies = ReplyLog()  # by message id, for /get_reply_stats

    @staticmethod
    def request_id(message_id: str) -> str:
        return f"chat-{message_id}"

    def abort(self, message_id: str) -> None:
        """Stop the reply with this message id in the engine (idempotent; safe from sync code)."""
        self.engine.abort(self.request_id(message_id))

    def encode_prompt(self, chat_prompt: AbstractChatPrompt, params: dict[str, Any],
                      opts: dict[str, Any] | None = None) -> list[int]:
        return self._encode(chat_prompt, params, self._render(chat_prompt, opts))

    @staticmethod
    def _render(chat_prompt: AbstractChatPrompt, opts: dict[str, Any] | None = None) -> str:
        prompt = chat_prompt.create_prompt(opts) if opts else chat_prompt.create_prompt()
        if not isinstance(prompt, str):
            raise HookResultError("create_prompt", f"{type(prompt).__name__}, not a str")
        return prompt

    def _encode(self, chat_prompt: AbstractChatPrompt, params: dict[str, Any], prompt: str) -> list[int]:
        add_special = params.get("add_special_tokens")
        if add_special is None:
            add_special = getattr(chat_prompt, "get_add_special_tokens", lambda: None)()
        if add_special is None:
            return list(self.tokenizer(prompt)["input_ids"])
        return list(self.tokenizer.encode(prompt, add_special_tokens=add_special))

    def stop_token_ids(self, chat_prompt: AbstractChatPrompt) -> list[int]:
        """Token ids of the prompt's end-of-turn tokens that exist in this tokenizer (EOS is implied)."""
        ids = []
        unk = getattr(self.tokenizer, "unk_token_id", None)
        tokens = checked_strings(getattr(chat_prompt, "get_stop_tokens", lambda: [])(), "get_stop_tokens")
        for token in tokens or []:
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != unk:
                ids.append(token_id)
        return ids

    def fit_prompt(self, chat_prompt: AbstractChatPrompt, params: dict[str, Any],
                   max_prompt: int) -> tuple[list[int], bool]:
        """The prompt's token ids within `max_prompt`, and whether anything was left out.

        Whole exchanges go first, oldest first, so the system text and the latest turns stay; only
        if the last exchange alone is too long are its oldest tokens cut (as the original did).
        The history itself is kept whole.

        Cost: leaving out more exchanges only shortens the prompt, so the number to leave out is
        found by bisection, first against the byte bound of `PromptMeasure` (rendering only), then
        by tokenizing: O(log exchanges) renderings and encodings, each at most about the context's
        worth of text, never one full encoding per exchange left out. A last exchange too long
        alone is cut to its tail before it is tokenized."""
        num_exchanges = max(chat_prompt.get_turn(), 1)
        texts: dict[int, str] = {}

        def text(skip: int) -> str:
            if skip not in texts:
                texts[skip] = self._render(chat_prompt, {"skip_exchanges": skip} if skip else None)
            return texts[skip]

        last = num_exchanges - 1
        # The fewest exchanges to leave out so the byte bound allows the prompt (no tokenizing).
        skip = _first(0, last, lambda s: self.measure.min_tokens(text(s)) <= max_prompt)
        encoded: dict[int, list[int]] = {}

        def fits(s: int) -> bool:
            encoded[s] = self._encode(chat_prompt, params, text(s))
            return len(encoded[s]) <= max_prompt

        skip = _first(skip, last, fits)
        ids = encoded.get(skip)
        if ids is None:  # the search ended on the last exchange without tokenizing it
            last_text = text(skip)
            if self.measure.min_tokens(last_text) > max_prompt:  # too long alone: tokenize only its tail
                last_text = self._tail(last_text, max_prompt)
            ids = self._encode(chat_prompt, params, last_text)
        cut = len(ids) > max_prompt
        if cut:
            ids = ids[-max_prompt:]
        elif not skip:
            return ids, False
        self.logger.warning("the conversation did not fit in context_len=%s: left out %d old exchange(s)%s",
                            params["context_len"], skip, " and cut the oldest tokens" if cut else "")
        return ids, True

    def _tail(self, text: str, max_prompt: int) -> str:
        """The end of `text` that surely holds more than `max_prompt` tokens (all of it without a bound)."""
        limit = self.measure.max_chars_for(max_prompt + 1)
        if limit is None or len(text) <= limit:
            return text
        # Characters are at most 4 UTF-8 bytes; `limit` characters hold at least `limit` bytes.
        return text[-limit:]

    def context_budget(self, params: dict[str, Any]) -> tuple[int, int]:
        """(the most prompt tokens, the most new tokens) for one generation."""
        max_model_len = self.engine.max_model_len
        context_len = min(int(params["context_len"] or max_model_len), max_model_len)
        max_new = min(int(params["max_new_tokens"]), context_len - 1)
        return context_len - max_new, max_new

    def prepare(self, chat_prompt: AbstractChatPrompt, opts: GenerateOptions | None = None) -> PreparedReply:
        """Everything about one reply that can be decided before it streams: the rendered and
        tokenized prompt, the sampling parameters, the stop strings and output replacements.

        The ChatPrompt's hooks run here, so a hook that raises, or returns something unusable,
        fails now (`PromptHookError`, naming the hook), before any response has started."""
        opts = opts or {}
        formatter = ReplyFormatter(opts.get("output_type", "response_text"))
        params = merge_params(self.params, opts.get("generation_params"))
        max_prompt, max_new = self.context_budget(params)
        message_id = opts.get("message_id")
        request_id = self.request_id(message_id or uuid.uuid4().hex)
        with prompt_hooks(chat_prompt):
            chat_mode = chat_prompt.is_chat_mode_enabled()
            continued = opts.get("prompt_token_ids")
            if continued is not None and len(continued) <= max_prompt:
                ids, truncated, source = list(continued), False, "continued"
                self.logger.debug("%s: prompt continued from stored token ids (%d tokens)", request_id, len(ids))
            else:
                if continued is not None:
                    self.logger.debug("%s: the stored ids and the new turn (%d tokens) do not fit %d; re-rendering",
                                      request_id, len(continued), max_prompt)
                ids, truncated = self.fit_prompt(chat_prompt, params, max_prompt)
                source = "rendered"
            stop = None
            if chat_mode:
                checked_strings(chat_prompt.get_stop_strs(), "get_stop_strs")
                stop = chat_prompt.get_final_stop_strs()
            stop_token_ids = self.stop_token_ids(chat_prompt)
            replacements = checked_pairs(chat_prompt.get_replacement_when_output()) if chat_mode else None
        sampling = to_sampling_params(params, max_tokens=max_new, stop=stop, stop_token_ids=stop_token_ids)
        adjust = getattr(self.token_sampler, "engine_params", None)
        if adjust is not None:
            sampling = adjust(sampling)
        return PreparedReply(chat_prompt, formatter, message_id, ids, truncated, sampling, replacements,
                             request_id, opts.get("post_process_callback"), source)

    async def prepare_off_loop(self, chat_prompt: AbstractChatPrompt,
                               opts: GenerateOptions | None = None) -> PreparedReply:
        """`prepare`, run on the tokenizing pool when the history is big, so rendering and
        tokenizing it never stall the event loop (the conversation's turn keeps it unchanged)."""
        if self.offload is None:
            return self.prepare(chat_prompt, opts)
        return await self.offload.run(_history_chars(chat_prompt), self.prepare, chat_prompt, opts)

    def generate(self, chat_prompt: AbstractChatPrompt,
                 opts: GenerateOptions | None = None) -> AsyncIterator[ReplyChunk]:
        """`stream(prepare(chat_prompt, opts))`: preparation errors raise here, at the call."""
        return self.stream(self.prepare(chat_prompt, opts))

    async def stream(self, reply: PreparedReply) -> AsyncIterator[ReplyChunk]:
        """Generate a prepared reply, yielding its chunks and updating its ChatPrompt as it grows."""
        chat_prompt, message_id, formatter = reply.chat_prompt, reply.message_id, reply.formatter
        self.logger.debug("generate %s: %d prompt tokens, %s", reply.request_id, len(reply.ids), reply.sampling)
        native, shown, last, failed = "", "", None, False
        output_ids: list[int] = []
        timer = ReplyTimer()
        self.replies.begin(message_id)
        try:
            # aclosing: when our consumer leaves early, the engine stream closes now (and aborts the
            # request), not whenever the garbage collector finalizes it.
            async with aclosing(self.engine.generate(reply.ids, reply.sampling, request_id=reply.request_id)) as stream:
                async for delta in stream:
                    last = delta
                    if delta.new_token_ids:
                        timer.token()
                        output_ids.extend(delta.new_token_ids)
                    native += delta.new_text
                    chat_prompt.set_responder_last_msg(native.strip())
                    if message_id is not None:
                        chat_prompt.set_responder_last_msg_id(message_id)
                    if delta.finished:
                        break
                    text = visible_reply(native, reply.replacements, final=False).strip()
                    if text != shown:
                        shown = text
                        yield formatter.chunk(text)
        except Exception:
            failed = True
            raise
        finally:
            text = visible_reply(native, reply.replacements, final=True).strip()
            reason = "error" if failed else (last.finish_reason if last and last.finished else "abort")
            record = GenerationRecord(
                message_id, last.num_prompt_tokens if last else len(reply.ids), last.num_cached_tokens if last else 0,
                last.num_output_tokens if last else 0, reason, reply.truncated, text,
                timer.time_to_first_token_sec, timer.decode_sec, tuple(reply.ids), tuple(output_ids), reply.source)
            self.replies.end(record)
            if last is not None:
                self.records.append(record)
                self.logger.debug("%s done: finish_reason=%s, %d prompt tokens (%d cached), %d generated",
                                  reply.request_id, reason, last.num_prompt_tokens, last.num_cached_tokens,
                                  last.num_output_tokens)
        yield formatter.chunk(text, last=True)
        if reply.post_process_callback is not None:
            await reply.post_process_callback("success")


def _history_chars(chat_prompt: AbstractChatPrompt) -> int:
    """About how much text rendering this prompt handles (what decides where it is tokenized)."""
    total = len(getattr(chat_prompt, "get_system", lambda: "")() or "")
    for content in getattr(chat_prompt, "chat_contents", ()):
        total += len(content.get_message() or "")
    return total
