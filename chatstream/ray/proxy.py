"""`ReplicaProxy`: sends one request to the replicas in the router's order and streams the answer.

- A replica that answers **429** (its own `--num-concurrent` + `--max-queue` line is full) is
  passed over for the next; the client gets the 429 (with the smallest `Retry-After`) only when
  every live replica refused. A refused /chat_stream wrote nothing to its conversation (admission
  comes before the turn opens), so trying the next replica is safe.
- A replica that **cannot be reached** before it answered is marked down and passed over too.
- A replica that **dies mid-stream** ends the stream with an error in the response's own format
  (the /chat_stream error segment, or an OpenAI error event for server-sent events), never a hang;
  `on_broken` (the ingress) then settles the conversation's open reply in the store.
- Every answer names its replica in `X-ChatStream-Replica`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from chatstream.facade.chat_output import DEFAULT_FINISH_TOKEN, error_segment
from chatstream.http.openai_protocol import OpenAIError, sse
from chatstream.ray.asgi_bridge import ProxiedRequest, ResponseStart
from chatstream.ray.route_keys import learned_keys, route_key
from chatstream.ray.router import ReplicaRouter

logger = logging.getLogger("chatstream.ray")

REPLICA_HEADER = "X-ChatStream-Replica"
REPLICA_DIED = "the replica serving this reply stopped; send the message again"
_KEEP_BYTES = 1 << 16
_HOP_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive"})


@dataclass(frozen=True)
class BrokenStream:
    """A response cut short because its replica failed: what the ingress needs to settle it."""

    replica: str
    request: ProxiedRequest
    start: ResponseStart


class ReplicaUnreachable(Exception):
    """The replica failed before it answered."""


class ReplicaProxy:
    """`handles`: replica name -> its Ray Serve deployment handle."""

    def __init__(self, handles: Mapping[str, Any], router: ReplicaRouter,
                 on_broken: Callable[[BrokenStream], Awaitable[None]]) -> None:
        self.handles = dict(handles)
        self.router = router
        self.on_broken = on_broken

    async def open(self, name: str, request: ProxiedRequest) -> tuple[ResponseStart, Any]:
        """Starts `request` on replica `name`: its `ResponseStart` and the rest of the stream."""
        stream = self.handles[name].options(stream=True).handle.remote(request)
        try:
            start = await stream.__anext__()
        except (asyncio.CancelledError, GeneratorExit):
            stream.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to reach it: the replica is passed over
            stream.cancel()
            raise ReplicaUnreachable(f"{name}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(start, ResponseStart):
            stream.cancel()
            raise ReplicaUnreachable(f"{name}: answered {type(start).__name__} before its status")
        return start, stream

    async def forward(self, request: ProxiedRequest) -> Response:
        key = route_key(request)
        route = self.router.route(key)
        refused: list[tuple[str, ResponseStart, bytes]] = []
        for name in route.replicas:
            self.router.started(name)
            try:
                start, stream = await self.open(name, request)
            except ReplicaUnreachable as exc:
                self.router.ended(name)
                self.router.mark_down(name)
                logger.warning("replica unreachable, trying the next: %s", exc)
                continue
            except BaseException:
                self.router.ended(name)
                raise
            if start.status == 429:
                body = b"".join([chunk async for chunk in _rest(stream)])
                self.router.ended(name)
                refused.append((name, start, body))
                continue
            if start.status < 400:
                self.router.served(name, key, learned_keys(start))
            logger.debug("%s %s -> %s (%s)", request.method, request.path, name, route.rule)
            return self._streamed(name, request, start, stream)
        if refused:
            return _refusal(refused)
        return JSONResponse({"error": "service_unavailable", "detail": "no replica is ready; try again shortly"},
                            status_code=503, headers={"Retry-After": "2"})

    def _streamed(self, name: str, request: ProxiedRequest, start: ResponseStart, stream: Any) -> Response:
        async def relay() -> AsyncIterator[bytes]:
            seen = b""  # the end of what was sent: the error tail repeats the reply so far
            try:
                async for chunk in stream:
                    seen = (seen + chunk)[-_KEEP_BYTES:]
                    yield chunk
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - the replica died under the stream
                logger.warning("replica %s failed during %s %s: %s", name, request.method, request.path, exc)
                self.router.mark_down(name)
                yield _error_tail(start, seen)
                await self.on_broken(BrokenStream(name, request, start))
            finally:
                stream.cancel()  # no-op once it ended; a client that left cancels the replica's call
                self.router.ended(name)

        response = StreamingResponse(relay(), status_code=start.status)
        response.raw_headers = _headers(start.headers, name)
        return response


async def _rest(stream: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield chunk
    except Exception:  # noqa: BLE001 - a refusal's body is best effort
        return


def _error_tail(start: ResponseStart, seen: bytes) -> bytes:
    """What ends a stream whose replica died, in the stream's format: an OpenAI error event, or
    (/chat_stream, whose segments each carry the reply so far) the open segment closed and the
    error segment: the reply so far, `<::ERROR::>`, the reason."""
    content_type = (start.header("content-type") or "").lower()
    if content_type.startswith("text/event-stream"):
        error = OpenAIError(502, "the replica serving this request stopped; send the request again",
                            type="server_error")
        return (sse(error.body()) + "data: [DONE]\n\n").encode()
    text = seen.decode("utf-8", "ignore")
    closing = "" if not text or text.endswith(DEFAULT_FINISH_TOKEN) else DEFAULT_FINISH_TOKEN
    return (closing + error_segment(text + closing, REPLICA_DIED)).encode()


def _headers(headers: tuple[tuple[str, str], ...], replica: str) -> list[tuple[bytes, bytes]]:
    kept = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers if k.lower() not in _HOP_HEADERS]
    return kept + [(REPLICA_HEADER.lower().encode(), replica.encode())]


def _refusal(refused: list[tuple[str, ResponseStart, bytes]]) -> Response:
    """Every live replica said 429: the last refusal, with the soonest Retry-After."""
    retry_after = min(int(start.header("retry-after") or 1) for _, start, _ in refused)
    name, start, body = refused[-1]
    headers = [(k, v) for k, v in start.headers if k.lower() not in ("retry-after", "content-length")]
    response = Response(body, status_code=429)
    response.raw_headers = _headers((*headers, ("retry-after", str(retry_after))), name) + [
        (b"content-length", str(len(body)).encode())]
    return response
