"""`create_app`: the `chatstream serve` application, for embedding too.

One FastAPI app serves the native ChatStream API (/chat_stream and the other default APIs, with
sessions), the conversation routes (/conversations...), the OpenAI-compatible API (/v1/...), the
web chat page (/), /health and /metrics.

The app's lifespan owns the conversation store, the model and the engine: at start-up it opens
the store (an unusable SQLite path stops the start; Redis is reached on first use, so a server
whose Redis is down still serves /v1 and answers 503 where the store is needed), then begins
loading the model in a worker thread, so the server answers at once (`/health` and the APIs say
503 until the model is ready); at shutdown (uvicorn turns SIGTERM/SIGINT into a lifespan
shutdown) it stops the engine thread and closes the store. Every option is fixed when the app is
created.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from chatstream.conversations import StoreOptions, days, default_store_url, parse_store_url
from chatstream.facade.client_roles import API_NAMES
from chatstream.facade.default_routes import (
    add_cors_middleware, add_request_limits, add_session_middleware, register_routes)
from chatstream.facade.request_limits import DEFAULT_BODY_TIMEOUT_SEC, DEFAULT_MAX_REQUEST_BYTES
from chatstream.facade.store_handle import StoreHandle
from chatstream.http.auth import ApiKeyAuth
from chatstream.http.drain import DEFAULT_SHUTDOWN_TIMEOUT_SEC, Drain, DrainGuard
from chatstream.http.metrics import Metrics
from chatstream.http.openai_routes import add_openai_routes
from chatstream.http.openapi_doc import install_openapi
from chatstream.http.ops_routes import add_ops_routes
from chatstream.http.origin_guard import OriginGuard
from chatstream.http.server_state import ServerState, server_state
from chatstream.http.session_secret import session_secret

if TYPE_CHECKING:
    from chatstream.chat_prompt.abstract_chat_prompt import AbstractChatPrompt
    from chatstream.engine.builder import ModelArg, TokenizerArg
    from chatstream.facade.chat_stream import ChatStream

logger = logging.getLogger("chatstream")

DEFAULT_WELCOME = "Hello! I am a small language model served by ChatStream. Ask me anything."


@dataclass(frozen=True)
class ServerConfig:
    """What `create_app` serves and how; `chat_stream_options` go to the `ChatStream` constructor
    (sampling defaults, queue sizes and engine options such as `num_kv_blocks`).

    `conversation_store`: a store URL (None: `default_store_url()`, an SQLite file in the user's
    data directory); `conversation_ttl_days`: delete conversations idle this long (None: keep).
    `session_secret`: signs the session cookie (None: kept in the data directory for a stored
    store, random for `memory`; see `session_secret`)."""

    model: ModelArg = "smollm2"
    tokenizer: TokenizerArg = None
    chat_prompt: str | type[AbstractChatPrompt] = "chat_template"
    model_name: str | None = None
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    session_secret: str | None = None
    web_ui_params: dict[str, Any] | None = None
    locale: str | None = None  # the web page's language ("en" / "ja"); None: the browser's
    metrics_names: str = "both"  # /metrics names: "chatstream", "vllm" (as vLLM's dashboards expect) or "both"
    conversation_store: str | None = None
    conversation_ttl_days: float | None = None
    chat_stream_options: dict[str, Any] = field(default_factory=dict)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES  # a larger body is a 413
    body_timeout: float = DEFAULT_BODY_TIMEOUT_SEC  # a body that takes longer to arrive is a 408
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT_SEC  # SIGTERM: how long running streams may go on
    allowed_hosts: tuple[str, ...] = ()  # Host header values served (empty: any), against DNS rebinding

    def store_url(self) -> str:
        return self.conversation_store or default_store_url()

    def store_options(self) -> StoreOptions:
        return StoreOptions(conversation_ttl_s=days(self.conversation_ttl_days))

    def served_model_name(self) -> str:
        """The id /v1/models shows: the given name, else the model directory's name (a replay
        shows the recorded model's)."""
        if self.model_name:
            return self.model_name
        if not isinstance(self.model, str) or self.model == "smollm2":
            return _display_name(self.model)
        from chatstream.mock.recording import Recording, is_recording_dir

        if is_recording_dir(self.model):
            return _display_name(Recording.load(self.model).manifest.model)
        return _display_name(self.model)


def _display_name(model: object) -> str:
    if not isinstance(model, str):
        return "model"
    name = model.rstrip("/").rsplit("/", 1)[-1]
    # The bundled model is named as its publisher names it, also when given by its cache path.
    return "SmolLM2-135M-Instruct" if name.lower() in ("smollm2", "smollm2-135m-instruct") else name


def _chat_prompt_class(chat_prompt: str | type[AbstractChatPrompt]) -> type[AbstractChatPrompt]:
    from chatstream.chat_prompt.presets import PRESETS

    if isinstance(chat_prompt, type):
        return chat_prompt
    try:
        return PRESETS[chat_prompt]
    except KeyError:
        raise ValueError(f"unknown chat prompt preset {chat_prompt!r}; known: {sorted(PRESETS)}") from None


def build_chat_stream(config: ServerConfig, stores: StoreHandle | None = None) -> ChatStream:
    """Load the model and start the engine (blocking: minutes for a large model)."""
    from chatstream.facade.chat_stream import ChatStream

    chat_stream = ChatStream(model=config.model, tokenizer=config.tokenizer,
                             chat_prompt_clazz=_chat_prompt_class(config.chat_prompt),
                             conversation_store=stores if stores is not None else config.store_url(),
                             **config.chat_stream_options)
    # The library keeps a server's prompts, load and memory private without a role table; this
    # server guards every route with its one key (`--api-key`), so behind it they are the operator's.
    chat_stream.client_roles.denied_by_default = ()
    return chat_stream


def create_app(config: ServerConfig | None = None, *,
               on_ready: Callable[[ChatStream], None] | None = None,
               on_failed: Callable[[BaseException], None] | None = None, **options: Any) -> FastAPI:
    """The app; pass a `ServerConfig` or its fields as keywords. `on_ready(chat_stream)` runs once
    the model is loaded (the CLI prints the URL and the KV cache size there); `on_failed(error)`
    when it did not load (the CLI exits; an embedding app keeps answering 503 with the reason)."""
    config = config or ServerConfig(**options)
    _chat_prompt_class(config.chat_prompt)  # an unknown preset fails now, not after loading
    store_url = config.store_url()
    parse_store_url(store_url)  # a bad URL fails now (StoreConfigError, a ValueError)
    model_name = config.served_model_name()
    stores = StoreHandle(store_url, config.store_options())
    state = ServerState(model_name=model_name, api_key=config.api_key, metrics=Metrics(model_name, config.metrics_names),
                        stores=stores)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await stores.open()
        logger.info("conversation store: %s", stores.describe())
        loading = asyncio.ensure_future(_load(config, state, on_ready, on_failed))
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            if state.chat_stream is not None:
                state.chat_stream.shutdown()
            await stores.close()

    app = FastAPI(title="ChatStream", lifespan=lifespan)
    app.state.server = state
    state.drain = Drain(config.shutdown_timeout)
    # Outermost last: drain guard, request limits, trusted hosts, CORS, origin guard, API key, sessions
    # (so a request without the key never gets a session, and a draining server refuses before all).
    add_session_middleware(app, stores, {"secret_key": session_secret(config.session_secret, store_url)})
    if config.api_key:
        app.add_middleware(ApiKeyAuth, api_key=config.api_key)
    app.add_middleware(OriginGuard, allowed_origins=config.cors_origins)
    if config.cors_origins:
        add_cors_middleware(app, list(config.cors_origins))
    if config.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(config.allowed_hosts))
    add_request_limits(app, config.max_request_bytes, config.body_timeout)
    app.add_middleware(DrainGuard, drain=state.drain)
    add_ops_routes(app)
    add_openai_routes(app)
    ui_params = config.web_ui_params or {"welcomeMessage": DEFAULT_WELCOME, "title": f"ChatStream · {state.model_name}"}
    register_routes(app, list(API_NAMES), lambda request: server_state(request).chat_stream,
                    {"web_ui_params": ui_params, "locale": config.locale})
    install_openapi(app)
    return app


async def _load(config: ServerConfig, state: ServerState, on_ready: Callable[[ChatStream], None] | None,
                on_failed: Callable[[BaseException], None] | None) -> None:
    try:
        chat_stream = await asyncio.get_running_loop().run_in_executor(None, build_chat_stream, config,
                                                                       state.stores)
    except Exception as exc:  # noqa: BLE001 - reported by /health; the server stays up to say so
        logger.error("loading the model failed: %s: %s", type(exc).__name__, exc)
        logger.debug("loading the model failed", exc_info=exc)
        state.load_error = exc
        if on_failed is not None:
            on_failed(exc)
        return
    if state.metrics is not None:
        state.metrics.attach(chat_stream.engine, chat_stream.admission)
    state.set_ready(chat_stream)
    if on_ready is not None:
        on_ready(chat_stream)
