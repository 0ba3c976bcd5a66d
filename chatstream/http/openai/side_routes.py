"""The side endpoints vLLM serves beside the OpenAI API: tokenizing, versions, one model's card.

- `POST /tokenize`: `{"prompt": text}` (with `add_special_tokens`, default true) or `{"messages":
  [...]}` rendered by the chat template (`add_generation_prompt`, `continue_final_message`,
  `tools`, `chat_template_kwargs`, as in a chat request) -> `{"count", "max_model_len", "tokens",
  "token_strs"}` (`token_strs` with `return_token_strs`).
- `POST /detokenize`: `{"tokens": [...]}` -> `{"prompt": text}`.
- `GET /version`: `{"version": ...}`; `GET /v1/models/{model}`: the model card (with
  `max_model_len`), or a 404 in OpenAI's shape.

Tokenizing runs in a worker thread: a long text would otherwise hold the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.http.openai.messages import ChatMessage
from chatstream.http.openai.route_support import check_key, error_response, parse_body
from chatstream.http.openai.tools import ToolChoice, ToolDefinition, plan_tools
from chatstream.http.openai.wire import OpenAIError, RequestModel
from chatstream.http.openai_protocol import model_card
from chatstream.http.openai_serving import OpenAIServing
from chatstream.http.server_state import ServerState, server_state

MAX_DETOKENIZE_TOKENS = 1_000_000


class TokenizeRequest(RequestModel):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool | None = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    return_token_strs: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt and messages")
        return self


class DetokenizeRequest(RequestModel):
    model: str | None = None
    tokens: list[int] = Field(max_length=MAX_DETOKENIZE_TOKENS)


def _serving(state: ServerState) -> OpenAIServing:
    serving = state.openai
    if serving is None or not state.is_ready:
        raise OpenAIError(503, f"the model is not ready (status: {state.status})", type="service_unavailable")
    return serving


async def tokenize(request: Request) -> Response:
    state = server_state(request)
    try:
        check_key(request, state)
        body = await parse_body(request, TokenizeRequest)
        serving = _serving(state)
        serving.check_model(body.model)
        ids = await asyncio.to_thread(_tokenize, serving, body)
        strs = [serving.token_texts.text(t) for t in ids] if body.return_token_strs else None
    except OpenAIError as exc:
        return error_response(exc)
    return JSONResponse({"count": len(ids), "max_model_len": serving.engine.max_model_len, "tokens": ids,
                         "token_strs": strs})


def _tokenize(serving: OpenAIServing, body: TokenizeRequest) -> list[int]:
    if body.prompt is not None:
        add_special = True if body.add_special_tokens is None else body.add_special_tokens
        return list(serving.tokenizer.encode(body.prompt, add_special_tokens=add_special))
    tools = plan_tools(body.tools, body.tool_choice, None, getattr(serving.tokenizer, "chat_template", None))
    return serving.chat_prompt_ids([m.as_template_message() for m in body.messages or []], tools,
                                   body.add_generation_prompt, body.continue_final_message, body.chat_template_kwargs)


async def detokenize(request: Request) -> Response:
    state = server_state(request)
    try:
        check_key(request, state)
        body = await parse_body(request, DetokenizeRequest)
        serving = _serving(state)
        serving.check_model(body.model)
        vocab = serving.engine.vocab_size
        bad = next((t for t in body.tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise OpenAIError(400, f"tokens: token id {bad} is out of range [0, {vocab})", param="tokens")
        text = await asyncio.to_thread(serving.tokenizer.decode, body.tokens)
    except OpenAIError as exc:
        return error_response(exc)
    return JSONResponse({"prompt": text})


async def version(request: Request) -> Response:
    from chatstream import __version__

    return JSONResponse({"version": __version__})


async def model(request: Request) -> Response:
    state = server_state(request)
    try:
        check_key(request, state)
        name = request.path_params["model"]
        if name != state.model_name:
            raise OpenAIError(404, f"The model `{name}` does not exist", param="model", code="model_not_found")
    except OpenAIError as exc:
        return error_response(exc)
    return JSONResponse(model_card(state.model_name, state.created, max_model_len(state)))


def max_model_len(state: ServerState) -> int | None:
    """The served context length, once the engine is loaded."""
    serving = state.serving
    return serving.engine.max_model_len if serving is not None and serving.engine is not None else None
