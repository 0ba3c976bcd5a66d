"""`Ingress`: the Ray Serve deployment in front of the engine replicas; the address users see.

It serves the same surface as one `chatstream serve` (the page, /chat_stream and the default
APIs, /conversations, /v1, /health, /metrics) by forwarding each request to a replica
(`ReplicaProxy`, in the order `ReplicaRouter` gives), except three answers that are about all
replicas: /health (ready when one replica is; each replica's state listed), /metrics (every
replica's samples with a `replica` label, plus `chatstream:replica_up`), and /get_load (the
original's `chatstream_workers` list with one entry per replica, and their sum).

A probe asks each replica for its `status` every `probe_interval_s`; only replicas that answer
"ready" receive requests. A replica restarted by Ray Serve is routed to again once its probe says
it is ready. The ingress holds no model and needs no CPU of its own (`num_cpus=0`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chatstream.conversations import StoreOptions
from chatstream.facade.store_handle import StoreHandle
from chatstream.ray.asgi_bridge import ProxiedRequest, ResponseStart
from chatstream.ray.failover import settle_broken_reply
from chatstream.ray.metrics_merge import merge_metrics, replica_gauges
from chatstream.ray.proxy import BrokenStream, ReplicaProxy
from chatstream.ray.router import ReplicaRouter

logger = logging.getLogger("chatstream.ray")

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
LOAD_KEYS = ("processing", "waiting", "max_processing", "max_waiting")


class Ingress:
    """The deployment's class (`build_app` wraps it with `serve.deployment` and `serve.ingress`).
    `replicas`: the replicas' deployment handles, in the order of `names`."""

    def __init__(self, *replicas: Any, names: tuple[str, ...], store_url: str, store_options: StoreOptions,
                 probe_interval_s: float = 1.0) -> None:
        self.router = ReplicaRouter(tuple(names))
        self.stores = StoreHandle(store_url, store_options)
        self.proxy = ReplicaProxy(dict(zip(names, replicas)), self.router, self._settle)
        self.probe_interval_s = probe_interval_s
        self.statuses: dict[str, dict[str, Any]] = {name: {"replica": name, "status": "starting"} for name in names}

    # -- Ray Serve's ASGI hook -------------------------------------------------------------------------
    def __serve_build_asgi_app__(self) -> Starlette:
        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await self.stores.open()
            probe = asyncio.ensure_future(self._probe_forever())
            try:
                yield
            finally:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
                await self.stores.close()

        return Starlette(lifespan=lifespan, routes=[
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/get_load", self.get_load, methods=["GET", "POST"]),
            Route("/{path:path}", self.forward, methods=METHODS),
        ])

    # -- routes ---------------------------------------------------------------------------------------
    async def forward(self, request: Request) -> Response:
        return await self.proxy.forward(await _proxied(request))

    async def health(self, request: Request) -> Response:
        ready = bool(self.router.live)
        body = {"status": "ready" if ready else "loading",
                "replicas": [self._status_of(name) for name in self.router.names]}
        return JSONResponse(body, status_code=200 if ready else 503)

    def _status_of(self, name: str) -> dict[str, Any]:
        """The replica's last probed status, unless the proxy has marked it down since (a stream to it broke,
        or it could not be reached): then it is not reported ready until a probe finds it ready again."""
        status = self.statuses[name]
        if status.get("status") == "ready" and not self.router.is_up(name):
            return {**status, "status": "unreachable", "reason": "marked down since the last probe"}
        return status

    async def metrics(self, request: Request) -> Response:
        proxied = await _proxied(request)
        texts = {name: body.decode() for name, (start, body) in (await self._ask_all(proxied)).items()
                 if start.status == 200}
        up = {name: self.router.is_up(name) for name in self.router.names}
        in_flight = {name: self.router.in_flight(name) for name in self.router.names}
        return Response(merge_metrics(texts) + replica_gauges(up, in_flight),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def get_load(self, request: Request) -> Response:
        answers = await self._ask_all(await _proxied(request))
        workers: list[dict[str, Any]] = []
        for name, (start, body) in answers.items():
            if start.status != 200:  # e.g. the caller's role may not read the load: answered as a replica would
                return Response(body, status_code=start.status, media_type=start.header("content-type"))
            for worker in json.loads(body).get("chatstream_workers", []):
                workers.append({**worker, "replica": name})
        total = {key: sum(int(w.get(key, 0)) for w in workers) for key in LOAD_KEYS}
        return JSONResponse({"chatstream_workers": workers, "total": total})

    # -- helpers --------------------------------------------------------------------------------------
    async def _ask_all(self, request: ProxiedRequest) -> dict[str, tuple[ResponseStart, bytes]]:
        """`request` on every live replica at once: name -> (status line, whole body)."""
        async def ask(name: str) -> tuple[ResponseStart, bytes] | None:
            try:
                start, stream = await self.proxy.open(name, request)
                return start, b"".join([chunk async for chunk in stream])
            except Exception:  # noqa: BLE001 - a replica that fails here (ReplicaUnreachable, ...) is left out
                return None

        names = self.router.live
        results = await asyncio.gather(*(ask(name) for name in names))
        return {name: result for name, result in zip(names, results) if result is not None}

    async def _settle(self, broken: BrokenStream) -> None:
        if broken.request.path == "/chat_stream":
            await settle_broken_reply(self.stores, broken)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.gather(*(self._probe(name) for name in self.router.names))
            await asyncio.sleep(self.probe_interval_s)

    async def _probe(self, name: str) -> None:
        handle = self.proxy.handles[name]
        try:
            status = await asyncio.wait_for(handle.status.remote(), timeout=max(2.0, 3 * self.probe_interval_s))
        except Exception as exc:  # noqa: BLE001 - unreachable, restarting or slow: not routed to
            status = {"replica": name, "status": "unreachable", "reason": f"{type(exc).__name__}"}
        was_up = self.router.is_up(name)
        if status.get("status") == "ready":
            self.router.mark_up(name)
        else:
            self.router.mark_down(name)
        if was_up != self.router.is_up(name):
            logger.info("replica %s is %s", name, status.get("status"))
        self.statuses[name] = status


async def _proxied(request: Request) -> ProxiedRequest:
    client = (request.client.host, request.client.port) if request.client else None
    headers: Mapping[str, str] = request.headers
    # Under a route prefix the replica sees the path without it, as it would served alone.
    path, root_path = request.scope["path"], request.scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path):] or "/"
    return ProxiedRequest(method=request.method, path=path,
                          query_string=request.scope.get("query_string", b""),
                          headers=tuple((k, v) for k, v in headers.items()), body=await request.body(),
                          client=client)
