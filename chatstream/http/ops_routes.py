"""Routes for operators and load balancers: `GET /health` and `GET /metrics`.

Both read `ServerState` (on `app.state.server`) per request and never wait for the model:

- `/health` is 200 only when the engine is serving; 503 while the model loads, after it failed to
  load, after the engine thread died (with why: the engine's `dead_reason`), or while the server
  drains at shutdown (`"status": "draining"`), so a load balancer takes the instance out of rotation.
- `/metrics` is the Prometheus text of `ServerState.metrics` and answers 200 in every state, so a
  scraper sees a loading or dead server instead of a gap. The app calls `metrics.attach(...)`
  once the model is ready; until then only the latency histograms and the metric names are there. It is 404 when metrics are not enabled.

Routes are plain Starlette routes on `app.router`, so this works for FastAPI and Starlette apps.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatstream.http.server_state import ServerState, server_state

MAX_ERROR_CHARS = 300  # enough to recognise the failure; the full traceback is in the log


def _short_error(exc: BaseException | None, fallback: str) -> str:
    return fallback if exc is None else _shorten(f"{type(exc).__name__}: {exc}")


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


def health_body(state: ServerState) -> tuple[dict[str, Any], int]:
    """The /health JSON and status code for the server's current state."""
    status = state.status
    body: dict[str, Any] = {"status": status, "model": state.model_name}
    if status == "ready":
        return body, 200
    if status == "failed":
        body["error"] = _short_error(state.load_error, "the model failed to load")
    elif status == "dead":
        reason = state.serving.dead_reason if state.serving is not None else None
        body["error"] = _shorten(reason or "the engine is not running")
    elif status == "draining":
        body["detail"] = "the server is shutting down: running requests finish, new ones are refused"
    return body, 503


async def health(request: Request) -> Response:
    body, status_code = health_body(server_state(request))
    return JSONResponse(body, status_code=status_code)


async def metrics(request: Request) -> Response:
    state = server_state(request)
    if state.metrics is None:
        return JSONResponse({"error": "not_found", "detail": "metrics are not enabled"}, status_code=404)
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)


def add_ops_routes(app: Starlette) -> None:
    """Register `GET /health` and `GET /metrics` on `app`."""
    app.router.add_route("/health", health, methods=["GET"], name="health")
    app.router.add_route("/metrics", metrics, methods=["GET"], name="metrics")
