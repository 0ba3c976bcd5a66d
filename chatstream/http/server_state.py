"""What the routes of a `chatstream serve` app share, kept on `app.state.server`.

The model loads in the background while the server already answers (`/health` says 503 until it
is ready), so `chat_stream` is None until then. Routes read the state per request through
`server_state(request)` and answer 503 when the engine is not ready or has died.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request


@dataclass
class ServerState:
    model_name: str
    api_key: str | None = None
    chat_stream: Any = None  # the ChatStream, once the model is loaded
    load_error: BaseException | None = None
    metrics: Any = None  # chatstream.http.metrics.Metrics, when enabled
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_ready(self) -> bool:
        return self.chat_stream is not None and self.chat_stream.is_ready

    @property
    def status(self) -> str:
        """"ready", "loading", "failed" (the model did not load) or "dead" (the engine thread died)."""
        if self.load_error is not None:
            return "failed"
        if self.chat_stream is None:
            return "loading"
        return "ready" if self.chat_stream.is_ready else "dead"


def server_state(request: Request) -> ServerState:
    return request.app.state.server
