"""The OpenAI-compatible wire format: request models, response shapes and the error type.

This module owns what crosses the wire for `/v1/chat/completions` and `/v1/completions`:
- `ChatCompletionRequest` / `CompletionRequest`, pydantic models that parse a request body and
  convert themselves to `SamplingParams` (`to_sampling_params`);
- builders for the response dicts, in OpenAI's exact shapes (`chat.completion`,
  `chat.completion.chunk`, `text_completion`, `usage`);
- `OpenAIError`, raised anywhere below the route and answered as
  `{"error": {"message", "type", "param", "code"}}` with its HTTP status.

Unknown request fields are ignored (clients send vendor extras), but fields whose meaning we
cannot honour (logprobs, tools, suffix, echo, ...) are refused with a 400 rather than silently
dropped, so a caller never gets an answer that ignored part of its request.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatstream.engine.outputs import RequestDelta
from chatstream.engine.sampling_params import SamplingParams

MAX_PROMPTS = 32  # prompts in one /v1/completions request (each gets n choices)


class OpenAIError(Exception):
    """An error answered in OpenAI's shape; `headers` go on the HTTP response (e.g. Retry-After)."""

    def __init__(self, status_code: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code, self.message, self.type, self.param, self.code = status_code, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# -- requests ----------------------------------------------------------------------------------
class _Model(BaseModel):
    # extra="ignore": see the module docstring. strict: a JSON value must already have the field's
    # type ("stream": "yes" is not true, false is not token 0, 1.5 is not an integer).
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Model):
    type: Literal["text"]
    text: str


class ChatMessage(_Model):
    # "developer" is OpenAI's newer name for the system role; templates only know "system".
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def as_template_message(self) -> dict[str, str]:
        content = self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(_Model):
    include_usage: bool = False


class _SamplingRequest(_Model):
    """The fields both endpoints share, and their conversion to `SamplingParams`."""

    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = Field(1, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    logit_bias: dict[str, float] | None = None
    # Extras that OpenAI lacks but local servers commonly accept.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool | None = None  # vLLM's extra: generate max_tokens even past EOS (benchmarks use it)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def _requested_max_tokens(self) -> tuple[int | None, str]:
        """(the requested completion length or None, the field it came from)."""
        raise NotImplementedError

    def _check_supported(self) -> None:
        if self.logit_bias:
            raise _unsupported("logit_bias")

    def to_sampling_params(self, default_max_tokens: int | None, max_room: int | None = None,
                           stop_token_ids: list[int] | None = None) -> SamplingParams:
        """The request's `SamplingParams`; raises `OpenAIError` (400) naming the bad field.

        `default_max_tokens` applies when the request gives none; `max_room` (the context left
        after the prompt) caps it, because asking for more than fits is clamped, not refused.
        """
        self._check_supported()
        max_tokens, max_tokens_field = self._requested_max_tokens()
        if max_tokens is None:
            max_tokens = default_max_tokens
        if max_tokens is not None and max_room is not None and max_tokens > max_room:
            max_tokens = max_room
        values: dict[str, Any] = {
            "max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "min_p": self.min_p, "seed": self.seed, "stop": self.stop, "stop_token_ids": stop_token_ids,
            "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
            "repetition_penalty": self.repetition_penalty, "ignore_eos": self.ignore_eos,
        }
        try:
            return SamplingParams(**{k: v for k, v in values.items() if v is not None})
        except ValueError as exc:
            # SamplingParams' messages start with the field name; report the name the client used.
            message = str(exc).replace("max_tokens", max_tokens_field, 1)
            param = message.split(" ", 1)[0]
            raise OpenAIError(400, message, param=param if param in type(self).model_fields else None) from exc


def _unsupported(field: str) -> OpenAIError:
    return OpenAIError(400, f"{field} is not supported by this server", param=field, code="unsupported_parameter")


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    def _requested_max_tokens(self) -> tuple[int | None, str]:
        # max_completion_tokens is OpenAI's current name; max_tokens is kept for older clients.
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    def _check_supported(self) -> None:
        super()._check_supported()
        if self.logprobs:
            raise _unsupported("logprobs")
        if self.top_logprobs:
            raise _unsupported("top_logprobs")
        for field in ("tools", "functions"):
            if getattr(self, field):
                raise _unsupported(field)
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise _unsupported("response_format")

    def template_messages(self) -> list[dict[str, str]]:
        return [message.as_template_message() for message in self.messages]


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None

    def _requested_max_tokens(self) -> tuple[int | None, str]:
        return self.max_tokens, "max_tokens"

    def _check_supported(self) -> None:
        super()._check_supported()
        if self.echo:
            raise _unsupported("echo")
        if self.suffix:
            raise _unsupported("suffix")
        if self.logprobs is not None:
            raise _unsupported("logprobs")
        if self.best_of is not None and self.best_of != self.n:
            raise _unsupported("best_of")

    def prompts(self) -> list[str | list[int]]:
        """The prompts, each a text or a list of token ids; raises a 400 for an empty or huge list."""
        prompt = self.prompt
        if isinstance(prompt, str):
            prompts: list[str | list[int]] = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            prompts = [list(prompt)]  # type: ignore[arg-type]
        else:
            prompts = list(prompt)  # type: ignore[arg-type]
        if not prompts:
            raise OpenAIError(400, "prompt must not be empty", param="prompt")
        if len(prompts) > MAX_PROMPTS:
            raise OpenAIError(400, f"prompt holds {len(prompts)} prompts; at most {MAX_PROMPTS} are allowed",
                              param="prompt")
        return prompts


# -- responses ---------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


class Choices:
    """One answer's choices as they grow; choice i answers prompt i // n.

    `close()` ends the open ones as "abort" (the client left or generation failed).
    """

    def __init__(self, prompt_lengths: list[int], n: int) -> None:
        self.prompt_lengths, self.n = prompt_lengths, n
        total = len(prompt_lengths) * n
        self.texts: list[list[str]] = [[] for _ in range(total)]
        self.finish_reasons: list[str | None] = [None] * total
        self.num_output_tokens, self.num_cached_tokens = [0] * total, [0] * total

    def add(self, index: int, delta: RequestDelta) -> None:
        self.texts[index].append(delta.new_text)
        self.num_output_tokens[index] = delta.num_output_tokens
        self.num_cached_tokens[index] = delta.num_cached_tokens
        if delta.finished:
            self.finish_reasons[index] = delta.finish_reason or "stop"

    def close(self) -> None:
        for index, reason in enumerate(self.finish_reasons):
            if reason is None:
                self.finish_reasons[index] = "abort"

    def usage(self) -> dict[str, Any]:
        # A prompt counts once however many choices share it, as OpenAI does; its cached part is
        # what every one of its choices found in the prefix cache.
        n = self.n
        cached = sum(min(self.num_cached_tokens[k * n:(k + 1) * n]) for k in range(len(self.prompt_lengths)))
        return usage(sum(self.prompt_lengths), sum(self.num_output_tokens), cached)

    def chat_completion(self, id: str, created: int, model: str) -> dict[str, Any]:
        choices = [{"index": i, "message": {"role": "assistant", "content": "".join(parts), "refusal": None},
                    "logprobs": None, "finish_reason": self.finish_reasons[i]} for i, parts in enumerate(self.texts)]
        return {"id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": choices, "usage": self.usage()}

    def text_completion(self, id: str, created: int, model: str) -> dict[str, Any]:
        choices = [text_choice(i, "".join(parts), self.finish_reasons[i]) for i, parts in enumerate(self.texts)]
        return text_completion(id, created, model, choices, self.usage())


def chat_chunk(id: str, created: int, model: str, choices: list[dict[str, Any]],
               include_usage: bool, usage_: dict[str, Any] | None = None) -> dict[str, Any]:
    chunk = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
    if include_usage:  # OpenAI sends "usage": null on every chunk but the last when usage is asked for
        chunk["usage"] = usage_
    return chunk


def chat_chunk_choice(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def text_completion(id: str, created: int, model: str, choices: list[dict[str, Any]],
                    usage_: dict[str, Any] | None, include_usage: bool = True) -> dict[str, Any]:
    """A `text_completion` object: the whole response, or (streaming) one chunk of it."""
    body = {"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices}
    if include_usage:
        body["usage"] = usage_
    return body


def text_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


DONE_EVENT = "data: [DONE]\n\n"  # ends every stream


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying `payload` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def model_list(model: str, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "chatstream"}]}
