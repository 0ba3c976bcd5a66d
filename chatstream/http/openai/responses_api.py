"""OpenAI's Responses API (`POST /v1/responses`), text in and out: its request and its objects.

Owns `ResponsesRequest` (what a request may say: `input` as a string or a list of messages,
`instructions`, `previous_response_id`, `store`, `stream`, `max_output_tokens`, the sampling
fields, `text.format` for structured output; fields for what we do not serve (tools, images,
reasoning, background runs) are a 400 naming them) and the builders of the `response` object and
of the streamed events, in the order and shapes OpenAI sends them: `response.created`,
`response.in_progress`, `response.output_item.added`, `response.content_part.added`,
`response.output_text.delta`..., `response.output_text.done`, `response.content_part.done`,
`response.output_item.done`, then `response.completed` (or `response.incomplete`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

from pydantic import Field

from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.structured_output import StructuredOutput
from chatstream.http.openai.messages import TextPart
from chatstream.http.openai.wire import OpenAIError, RequestModel, WireModel, unsupported


class InputMessage(WireModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[TextPart]

    def as_template_message(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class TextFormat(WireModel):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(WireModel):
    format: TextFormat = Field(default_factory=TextFormat)


class ResponsesRequest(RequestModel):
    model: str | None = None
    input: str | list[InputMessage]
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    # vLLM's extras, honoured.
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    # Accepted and ignored, as OpenAI does.
    user: str | None = None
    service_tier: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    parallel_tool_calls: bool | None = None
    truncation: Literal["disabled", "auto"] | None = None
    stream_options: dict[str, Any] | None = None
    # Known, not served: a 400 when they ask for anything.
    tools: list[Any] | None = None
    tool_choice: Any = None
    include: list[str] | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = None
    prompt: dict[str, Any] | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    conversation: Any = None
    _NOT_SERVED: ClassVar[dict[str, tuple[Any, ...]]] = {
        "tools": ([],), "tool_choice": ("none", "auto"), "include": ([],), "reasoning": (), "background": (False,),
        "prompt": (), "top_logprobs": (0,), "max_tool_calls": (), "conversation": ()}

    def check_supported(self) -> None:
        for name, harmless in self._NOT_SERVED.items():
            value = getattr(self, name)
            if value is not None and value not in harmless:
                raise unsupported(name)
        if self.truncation == "auto":
            raise unsupported("truncation", "a conversation that outgrows the context is a 400, not truncated")

    def input_messages(self) -> list[dict[str, str]]:
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        if not self.input:
            raise OpenAIError(400, "input must not be empty", param="input")
        return [item.as_template_message() for item in self.input]

    def structured_output(self) -> StructuredOutput | None:
        fmt = self.text.format if self.text is not None else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return StructuredOutput.json_object()
        if fmt.schema_ is None:
            raise OpenAIError(400, "text.format.schema is required for type json_schema", param="text.format.schema")
        try:
            return StructuredOutput.json_schema(fmt.schema_)
        except ValueError as exc:
            raise OpenAIError(400, str(exc), param="text.format.schema") from exc

    def to_sampling_params(self, room: int, stop_token_ids: list[int],
                           structured_output: StructuredOutput | None) -> SamplingParams:
        max_tokens = min(self.max_output_tokens or room, room)
        values = {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                  "top_k": self.top_k, "min_p": self.min_p, "repetition_penalty": self.repetition_penalty,
                  "seed": self.seed, "stop_token_ids": stop_token_ids or None, "structured_output": structured_output}
        try:
            return SamplingParams(**{k: v for k, v in values.items() if v is not None})
        except ValueError as exc:
            param = str(exc).split(" ", 1)[0]
            raise OpenAIError(400, str(exc), param=param if param in type(self).model_fields else None) from exc


def response_object(request: ResponsesRequest, id: str, created: int, model: str, status: str,
                    output: list[dict[str, Any]], usage: dict[str, Any] | None,
                    incomplete_reason: str | None = None) -> dict[str, Any]:
    """The `response` object (status "in_progress" with no output while streaming starts)."""
    text = request.text.format.model_dump(by_alias=True, exclude_none=True) if request.text else {"type": "text"}
    return {
        "id": id, "object": "response", "created_at": created, "status": status, "error": None,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.instructions, "max_output_tokens": request.max_output_tokens, "model": model,
        "output": output, "parallel_tool_calls": True, "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": None, "summary": None}, "store": request.store,
        "temperature": 1.0 if request.temperature is None else request.temperature,
        "text": {"format": text}, "tool_choice": "auto", "tools": [],
        "top_p": 1.0 if request.top_p is None else request.top_p, "truncation": "disabled",
        "usage": usage, "user": request.user, "metadata": request.metadata or {},
    }


def output_message(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "status": status, "role": "assistant",
            "content": [output_text(text)] if status != "in_progress" else []}


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def responses_usage(prompt_tokens: int, output_tokens: int, cached_tokens: int) -> dict[str, Any]:
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + output_tokens}


def status_of(finish_reason: str | None) -> tuple[str, str | None]:
    """(response status, incomplete reason) for an engine finish reason."""
    if finish_reason == "length":
        return "incomplete", "max_output_tokens"
    if finish_reason in ("abort", "error"):
        return "failed", None
    return "completed", None


class EventWriter:
    """Server-sent events of one streamed response, numbered as OpenAI numbers them."""

    def __init__(self) -> None:
        self.sequence_number = 0

    def __call__(self, type: str, **fields: Any) -> str:
        payload = {"type": type, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return f"event: {type}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"
