"""The OpenAI-compatible request models of `/v1/chat/completions` and `/v1/completions`.

This module owns what a request may say and how it becomes engine settings:
`ChatCompletionRequest` / `CompletionRequest` parse a body and convert themselves to
`SamplingParams` (`to_sampling_params`). Answers are built in `chatstream.http.openai.choices`.

The field policy (the README's table lists every field): OpenAI's fields and vLLM's extras
(`top_k`, `min_p`, `repetition_penalty`, `min_tokens`, `ignore_eos`, `stop_token_ids`,
`skip_special_tokens`, `include_stop_str_in_output`, `structured_outputs`, `prompt_logprobs`, ...)
are honoured on both endpoints, streaming or not; fields OpenAI accepts without any effect on the
answer (`user`, `metadata`, `store`, `service_tier`, ...) are accepted and ignored; a known field
we cannot honour is a 400 naming it when it asks for anything (`audio`, `prediction`,
`use_beam_search`, ...); an unknown field is a 400, as OpenAI answers "Unrecognized request
argument supplied".
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import Field

from chatstream.engine.sampling_params import MAX_LOGPROBS, SamplingParams
from chatstream.engine.structured_output import StructuredOutput
from chatstream.http.openai.messages import ChatMessage
from chatstream.http.openai.structured import StructuredFields
from chatstream.http.openai.tools import NamedToolChoice, ToolChoice, ToolDefinition
from chatstream.http.openai.wire import OpenAIError, WireModel, unsupported

MAX_PROMPTS = 32  # prompts in one /v1/completions request (each gets n choices)
MAX_COMPLETION_LOGPROBS = 5  # completions' legacy `logprobs`, as OpenAI allows


class StreamOptions(WireModel):
    include_usage: bool = False


class _SamplingRequest(StructuredFields):
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
    logit_bias: dict[str, float] | None = None
    # vLLM's extras, honoured.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None
    ignore_eos: bool | None = None
    stop_token_ids: list[int] | None = None
    skip_special_tokens: bool | None = None
    include_stop_str_in_output: bool | None = None
    # Accepted and ignored, as OpenAI does: they change nothing in the answer.
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    # Known, not honoured: a 400 when they ask for anything (see `_check_supported`).
    use_beam_search: bool | None = None
    length_penalty: float | None = None
    allowed_token_ids: list[int] | None = None
    bad_words: list[str] | None = None
    truncate_prompt_tokens: int | None = None
    logits_processors: list[Any] | None = None
    return_tokens_as_token_ids: bool | None = None
    # field -> the values that ask for nothing (None always does)
    _NOT_HONOURED: ClassVar[dict[str, tuple[Any, ...]]] = {
        "use_beam_search": (False,), "length_penalty": (1.0,), "allowed_token_ids": (), "bad_words": ((), []),
        "truncate_prompt_tokens": (), "logits_processors": ((), []), "return_tokens_as_token_ids": (False,)}

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def _requested_max_tokens(self) -> tuple[int | None, str]:
        """(the requested completion length or None, the field it came from)."""
        raise NotImplementedError

    def _check_supported(self) -> None:
        for name, harmless in self._NOT_HONOURED.items():
            value = getattr(self, name)
            if value is not None and value not in harmless:
                raise unsupported(name)

    def _logprobs(self) -> tuple[int | None, int | None]:
        """(logprobs, prompt_logprobs) for `SamplingParams`."""
        return None, None

    def to_sampling_params(self, default_max_tokens: int | None, max_room: int | None = None,
                           stop_token_ids: list[int] | None = None,
                           structured_output: StructuredOutput | None = None) -> SamplingParams:
        """The request's `SamplingParams`; raises `OpenAIError` (400) naming the bad field.

        `default_max_tokens` applies when the request gives none; `max_room` (the context left
        after the prompt) caps it, because asking for more than fits is clamped, not refused.
        `stop_token_ids` (the server's end-of-turn ids) join the request's own, unless the request
        sets `ignore_eos` (as in vLLM, where they are the generation config's EOS ids, which
        `ignore_eos` skips; the request's own `stop_token_ids` still stop it).
        """
        self._check_supported()
        max_tokens, max_tokens_field = self._requested_max_tokens()
        if max_tokens is None:
            max_tokens = default_max_tokens
        if max_tokens is not None and max_room is not None and max_tokens > max_room:
            max_tokens = max_room
        logprobs, prompt_logprobs = self._logprobs()
        implied = [] if self.ignore_eos else list(stop_token_ids or [])
        stops = implied + [t for t in self.stop_token_ids or [] if t not in implied]
        values: dict[str, Any] = {
            "max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
            "min_p": self.min_p, "seed": self.seed, "stop": self.stop, "stop_token_ids": stops or None,
            "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
            "repetition_penalty": self.repetition_penalty, "min_tokens": self.min_tokens, "ignore_eos": self.ignore_eos,
            "skip_special_tokens": self.skip_special_tokens,
            "include_stop_str_in_output": self.include_stop_str_in_output, "logprobs": logprobs,
            "prompt_logprobs": prompt_logprobs, "logit_bias": self._logit_bias(),
            "structured_output": structured_output,
        }
        try:
            return SamplingParams(**{k: v for k, v in values.items() if v is not None})
        except ValueError as exc:
            # SamplingParams' messages start with the field name; report the name the client used.
            message = str(exc).replace("max_tokens", max_tokens_field, 1)
            param = message.split(" ", 1)[0]
            raise OpenAIError(400, message, param=param if param in type(self).model_fields else None) from exc

    def _logit_bias(self) -> dict[int, float] | None:
        if not self.logit_bias:
            return None
        try:
            return {int(token): value for token, value in self.logit_bias.items()}
        except ValueError:
            raise OpenAIError(400, "logit_bias keys must be token ids (integers as strings)",
                              param="logit_bias") from None


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # vLLM's chat extras, honoured.
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    # Known, not honoured.
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    echo: bool | None = None
    documents: list[Any] | None = None
    chat_template: str | None = None
    _NOT_HONOURED: ClassVar[dict[str, tuple[Any, ...]]] = {
        **_SamplingRequest._NOT_HONOURED, "audio": (), "modalities": (["text"],), "prediction": (),
        "web_search_options": (), "functions": ((), []), "function_call": (), "reasoning_effort": (),
        "verbosity": (), "echo": (False,), "documents": ((), []), "chat_template": ()}

    def _requested_max_tokens(self) -> tuple[int | None, str]:
        # max_completion_tokens is OpenAI's current name; max_tokens is kept for older clients.
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"

    def _check_supported(self) -> None:
        super()._check_supported()
        if self.top_logprobs is not None and not self.logprobs:
            raise OpenAIError(400, "top_logprobs needs logprobs to be true", param="top_logprobs")
        if self.continue_final_message and self.add_generation_prompt:
            raise OpenAIError(400, "continue_final_message needs add_generation_prompt to be false",
                              param="continue_final_message")

    def _logprobs(self) -> tuple[int | None, int | None]:
        return (self.top_logprobs or 0) if self.logprobs else None, None

    @property
    def named_tool(self) -> str | None:
        return self.tool_choice.function.name if isinstance(self.tool_choice, NamedToolChoice) else None

    def template_messages(self) -> list[dict[str, Any]]:
        return [message.as_template_message() for message in self.messages]


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # vLLM's extra
    add_special_tokens: bool = True  # vLLM's extra
    # Known, not honoured.
    suffix: str | None = None
    best_of: int | None = None
    _NOT_HONOURED: ClassVar[dict[str, tuple[Any, ...]]] = {**_SamplingRequest._NOT_HONOURED, "suffix": ("",)}

    @property
    def keeps_output(self) -> bool:
        """False for `max_tokens: 0` with `echo`: the prompt alone is the answer (one token runs, unseen)."""
        return self.max_tokens != 0

    def _requested_max_tokens(self) -> tuple[int | None, str]:
        return (1 if self.max_tokens == 0 else self.max_tokens), "max_tokens"

    def _check_supported(self) -> None:
        super()._check_supported()
        if self.max_tokens == 0 and not self.echo:
            raise OpenAIError(400, "max_tokens must be at least 1 (0 is allowed only with echo)", param="max_tokens")
        if self.best_of is not None and self.best_of != self.n:
            raise unsupported("best_of", "it must equal n")

    def _logprobs(self) -> tuple[int | None, int | None]:
        prompt = self.prompt_logprobs
        if self.echo and self.logprobs is not None:
            prompt = max(prompt or 0, self.logprobs)  # the echoed prompt shows its log-probs too
        return self.logprobs, prompt

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


# -- answers -----------------------------------------------------------------------------------
DONE_EVENT = "data: [DONE]\n\n"  # ends every stream


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying `payload` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def model_card(model: str, created: int, max_model_len: int | None = None) -> dict[str, Any]:
    """One model as /v1/models shows it; `max_model_len` (vLLM's field) when the engine is loaded."""
    card: dict[str, Any] = {"id": model, "object": "model", "created": created, "owned_by": "chatstream"}
    if max_model_len is not None:
        card["max_model_len"] = max_model_len
    return card


def model_list(model: str, created: int, max_model_len: int | None = None) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(model, created, max_model_len)]}
