"""The ingress's /health: each replica's probed status, and the proxy's later word on it (no Ray needed)."""

from __future__ import annotations

import asyncio
import json

from chatstream.conversations.options import StoreOptions
from chatstream.ray.ingress import Ingress


def _health(ingress: Ingress) -> tuple[int, dict]:
    response = asyncio.run(ingress.health(None))  # type: ignore[arg-type]  # the route reads no request
    return response.status_code, json.loads(response.body)


def _ingress() -> Ingress:
    ingress = Ingress(object(), object(), names=("engine-0", "engine-1"), store_url="memory://",
                      store_options=StoreOptions())
    for pid, name in enumerate(ingress.router.names, start=100):
        ingress.statuses[name] = {"replica": name, "status": "ready", "pid": pid}
        ingress.router.mark_up(name)
    return ingress


def test_a_replica_the_proxy_marked_down_is_not_listed_ready_until_probed_again() -> None:
    ingress = _ingress()
    assert [r["status"] for r in _health(ingress)[1]["replicas"]] == ["ready", "ready"]

    ingress.router.mark_down("engine-0")  # a stream to it broke: the proxy's word, before any probe
    status, body = _health(ingress)
    assert status == 200 and body["status"] == "ready"  # engine-1 still serves
    down, up = body["replicas"]
    assert down["status"] == "unreachable" and down["pid"] == 100 and up["status"] == "ready"

    ingress.router.mark_up("engine-0")  # a probe found it ready again
    assert _health(ingress)[1]["replicas"][0]["status"] == "ready"


def test_no_live_replica_is_a_503_listing_them() -> None:
    ingress = _ingress()
    for name in ingress.router.names:
        ingress.router.mark_down(name)
    status, body = _health(ingress)
    assert status == 503 and body["status"] == "loading"
    assert [r["status"] for r in body["replicas"]] == ["unreachable", "unreachable"]
