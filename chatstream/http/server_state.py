"""What the routes of a `chatstream serve` app share, kept on `app.state.server`.

The model loads in the background while the server already answers (`/health` says 503 until it
is ready), so `serving` is None until then; `set_ready` installs it, once. Routes read the state
per request through `server_state(request)` and answer 503 when the engine is not ready or has
died. Everything here is typed: the serving context both APIs share, the metrics, the OpenAI
serving logic, and the values fixed when the app was made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import Request

from chatstream.http.drain import Drain
from chatstream.http.openai_serving import OpenAIServing
from chatstream.http.serving_context import ServingContext

if TYPE_CHECKING:
    from chatstream.facade.chat_stream import ChatStream
    from chatstream.facade.store_handle import StoreHandle
    from chatstream.http.metrics import Metrics


@dataclass
class ServerState:
    """model_name: the id clients use. api_key: required on every route but /health when set.
    metrics: the Prometheus metrics (None: /metrics is 404). created: the /v1/models timestamp,
    fixed per app. serving / openai: set by `set_ready` once the model is loaded. load_error: why
    it did not load. stores: the conversation store (opened and closed by the app's lifespan).
    drain: the shutdown state (`chatstream.http.drain`)."""

    model_name: str
    api_key: str | None = None
    metrics: Metrics | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    serving: ServingContext | None = None
    openai: OpenAIServing | None = None
    load_error: BaseException | None = None
    stores: StoreHandle | None = None
    drain: Drain = field(default_factory=Drain)

    def set_ready(self, chat_stream: ChatStream) -> ServingContext:
        """The model is loaded: from now on both APIs serve `chat_stream`'s engine."""
        self.serving = ServingContext.of(chat_stream, self.model_name, self.metrics)
        self.openai = OpenAIServing(self.serving)
        return self.serving

    @property
    def chat_stream(self) -> ChatStream | None:
        return None if self.serving is None else self.serving.chat_stream

    @property
    def is_ready(self) -> bool:
        return self.serving is not None and self.serving.is_ready

    @property
    def status(self) -> str:
        """"ready", "loading", "failed" (the model did not load), "dead" (the engine thread died) or
        "draining" (shutting down: running requests finish, new ones are refused)."""
        if self.drain.draining:
            return "draining"
        if self.load_error is not None:
            return "failed"
        if self.serving is None:
            return "loading"
        return "ready" if self.serving.is_ready else "dead"


def server_state(request: Request) -> ServerState:
    return request.app.state.server
