"""One answer's choices as they grow, and the JSON OpenAI sends for them, whole or streamed.

`Choices` keeps each choice's text, finish reason, token counts and log-probs as the engine's
deltas arrive (choice i answers prompt i // n), and builds `chat.completion`,
`chat.completion.chunk` and `text_completion` objects in OpenAI's exact shapes. `Presentation`
says what the request asked to see: log-probs (chat's or completions'), the echoed prompt, tool
calls parsed out of the text (whole, or streamed as OpenAI streams them: a call's id and name
first, then its arguments in pieces), and whether generated tokens are kept at all (completions'
`max_tokens: 0` with `echo`, which evaluation harnesses use to score a prompt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from chatstream.engine.logprobs import TokenLogprobs
from chatstream.engine.outputs import RequestDelta
from chatstream.http.openai.logprobs_format import CompletionLogprobs, chat_logprobs_content
from chatstream.http.openai.token_texts import TokenTexts
from chatstream.http.openai.tool_parsers import ToolCallStream, ToolDelta, parse_tool_calls
from chatstream.http.openai.tools import ToolPlan


@dataclass(frozen=True)
class Presentation:
    """What a request asked to see beyond the text (defaults: nothing)."""

    texts: TokenTexts | None = None  # needed for log-probs
    logprobs: int | None = None  # top-n per token; None: no log-probs
    echo_texts: tuple[str, ...] = ()  # completions' echo: each prompt's text
    echo_token_ids: tuple[tuple[int, ...], ...] = ()
    tools: ToolPlan | None = None
    keep_output: bool = True  # False: max_tokens 0 with echo (one token runs, none is shown)

    @property
    def echo(self) -> bool:
        return bool(self.echo_texts)


@dataclass
class _Choice:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    num_output_tokens: int = 0
    num_cached_tokens: int = 0
    logprobs: list[TokenLogprobs] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprobs | None] | None = None
    tool_stream: ToolCallStream | None = None
    completion_logprobs: CompletionLogprobs | None = None
    num_logprobs_shown: int = 0
    prompt_shown: bool = False
    started: bool = False


class Choices:
    """The choices of one answer; `close()` ends the open ones as "abort" (client gone or failure)."""

    def __init__(self, prompt_lengths: list[int], n: int, show: Presentation | None = None) -> None:
        self.prompt_lengths, self.n = prompt_lengths, n
        self.show = show or Presentation()
        self.items = [_Choice() for _ in range(len(prompt_lengths) * n)]
        if self.show.tools is not None and self.show.tools.parses_calls:
            for item in self.items:
                item.tool_stream = ToolCallStream(self.show.tools.format)

    @property
    def finish_reasons(self) -> list[str | None]:
        return [item.finish_reason for item in self.items]

    def add(self, index: int, delta: RequestDelta) -> None:
        item = self.items[index]
        if self.show.keep_output:
            item.parts.append(delta.new_text)
            item.logprobs.extend(delta.logprobs or ())
            item.num_output_tokens = delta.num_output_tokens
        if delta.prompt_logprobs is not None:
            item.prompt_logprobs = delta.prompt_logprobs
        item.num_cached_tokens = delta.num_cached_tokens
        if delta.finished:
            item.finish_reason = delta.finish_reason or "stop"

    def close(self) -> None:
        for item in self.items:
            if item.finish_reason is None:
                item.finish_reason = "abort"

    def usage(self) -> dict[str, Any]:
        # A prompt counts once however many choices share it, as OpenAI does; its cached part is
        # what every one of its choices found in the prefix cache.
        n = self.n
        cached = sum(min(item.num_cached_tokens for item in self.items[k * n:(k + 1) * n])
                     for k in range(len(self.prompt_lengths)))
        return usage(sum(self.prompt_lengths), sum(item.num_output_tokens for item in self.items), cached)

    # -- whole answers -------------------------------------------------------------------------
    def chat_completion(self, id: str, created: int, model: str) -> dict[str, Any]:
        choices = []
        for i, item in enumerate(self.items):
            text = "".join(item.parts)
            message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
            reason = item.finish_reason
            tools = self.show.tools
            if tools is not None and tools.parses_calls:
                content, calls = parse_tool_calls(text, tools.format)
                if calls:
                    message["content"] = content
                    message["tool_calls"] = [{"id": c.id, "type": "function",
                                              "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
                    reason = self._tool_reason(reason)
            choices.append({"index": i, "message": message, "logprobs": self._chat_logprobs(item.logprobs),
                            "finish_reason": reason})
        return {"id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": choices, "usage": self.usage()}

    def text_completion(self, id: str, created: int, model: str) -> dict[str, Any]:
        choices = []
        for i, item in enumerate(self.items):
            echo = self._echo_text(i)
            logprobs = self._completion_logprobs_since(i)
            choices.append(text_choice(i, echo + "".join(item.parts), item.finish_reason, logprobs))
        return text_completion(id, created, model, choices, self.usage())

    # -- streamed answers ----------------------------------------------------------------------
    def chat_chunk_choices(self, index: int, delta: RequestDelta) -> list[dict[str, Any]]:
        """The chunk choices one delta gives (a chunk each), the finish chunk's included."""
        self.add(index, delta)
        item = self.items[index]
        pieces: list[dict[str, Any]] = []
        text = delta.new_text if self.show.keep_output else ""
        if item.tool_stream is not None:
            tool_deltas = item.tool_stream.feed(text)
            if delta.finished:
                tool_deltas += item.tool_stream.finish()
            pieces = [_tool_delta(d) for d in tool_deltas]
        elif text:
            pieces = [{"content": text}]
        logprobs = self._chat_logprobs(delta.logprobs or []) if delta.logprobs else None
        if logprobs is not None and not pieces:
            pieces = [{}]
        out = [chat_chunk_choice(index, piece, logprobs=logprobs if k == 0 else None) for k, piece in enumerate(pieces)]
        if delta.finished:
            reason = item.finish_reason
            if item.tool_stream is not None and any(c.header_sent for c in item.tool_stream.calls):
                reason = self._tool_reason(reason)
            out.append(chat_chunk_choice(index, {}, reason))
        return out

    def text_chunk_choice(self, index: int, delta: RequestDelta) -> dict[str, Any] | None:
        """The chunk choice one delta gives (None when it shows nothing)."""
        self.add(index, delta)
        item = self.items[index]
        text = self._echo_text(index) if not item.started else ""
        item.started = True
        if self.show.keep_output:
            text += delta.new_text
        logprobs = self._completion_logprobs_since(index)
        reason = item.finish_reason if delta.finished else None
        if not text and reason is None and not (logprobs and logprobs["tokens"]):
            return None
        return text_choice(index, text, reason, logprobs)

    # -- parts ---------------------------------------------------------------------------------
    def _tool_reason(self, reason: str | None) -> str | None:
        # OpenAI ends a reply that calls tools with "tool_calls", except when one function was forced.
        tools = self.show.tools
        return "tool_calls" if reason == "stop" and tools is not None and not tools.is_named else reason

    def _chat_logprobs(self, entries: list[TokenLogprobs]) -> dict[str, Any] | None:
        if self.show.logprobs is None or self.show.texts is None:
            return None
        return {"content": chat_logprobs_content(entries, self.show.texts, self.show.logprobs), "refusal": None}

    def _echo_text(self, index: int) -> str:
        return self.show.echo_texts[index // self.n] if self.show.echo else ""

    def _completion_logprobs_since(self, index: int) -> dict[str, Any] | None:
        """Completions' log-probs of the positions not shown yet (the echoed prompt's first)."""
        if self.show.logprobs is None or self.show.texts is None:
            return None
        item = self.items[index]
        if item.completion_logprobs is None:
            item.completion_logprobs = CompletionLogprobs(self.show.texts, self.show.logprobs)
        acc = item.completion_logprobs
        start = len(acc)
        if self.show.echo and not item.prompt_shown and item.prompt_logprobs is not None:
            acc.add_prompt(self.show.echo_token_ids[index // self.n], item.prompt_logprobs)
            item.prompt_shown = True
        acc.add(item.logprobs[item.num_logprobs_shown:])
        item.num_logprobs_shown = len(item.logprobs)
        return acc.take(start)


def _tool_delta(delta: ToolDelta) -> dict[str, Any]:
    if delta.index is None:
        return {"content": delta.content}
    call: dict[str, Any] = {"index": delta.index}
    if delta.name is not None:
        call.update({"id": delta.id, "type": "function", "function": {"name": delta.name, "arguments": ""}})
    else:
        call["function"] = {"arguments": delta.arguments}
    return {"tool_calls": [call]}


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


def chat_chunk(id: str, created: int, model: str, choices: list[dict[str, Any]],
               include_usage: bool, usage_: dict[str, Any] | None = None) -> dict[str, Any]:
    chunk = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if include_usage:  # OpenAI sends "usage": null on every chunk but the last when usage is asked for
        chunk["usage"] = usage_
    return chunk


def chat_chunk_choice(index: int, delta: dict[str, Any], finish_reason: str | None = None,
                      logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def text_completion(id: str, created: int, model: str, choices: list[dict[str, Any]],
                    usage_: dict[str, Any] | None, include_usage: bool = True) -> dict[str, Any]:
    """A `text_completion` object: the whole response, or (streaming) one chunk of it."""
    body = {"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices}
    if include_usage:
        body["usage"] = usage_
    return body


def text_choice(index: int, text: str, finish_reason: str | None,
                logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
