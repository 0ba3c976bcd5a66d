"""A local Ray with Ray Serve's HTTP proxy on a free port, and replicated ChatStream apps on it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from chatstream.http.app import ServerConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[str]:
    """`ray.init(num_cpus=...)` and Ray Serve on 127.0.0.1; yields the HTTP proxy's URL."""
    import ray
    from ray import serve

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    """Until a single server's /health says ready."""
    deadline = time.monotonic() + timeout_s
    while httpx.get(url + "/health").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(url + "/health").text
        time.sleep(0.1)


def wait_for_replicas(url: str, count: int, timeout_s: float = 180.0) -> dict[str, Any]:
    """Until /health lists `count` ready replicas; returns that body."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            body = httpx.get(url + "/health", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            body = {}
        if sum(r.get("status") == "ready" for r in body.get("replicas", [])) == count:
            return body
        time.sleep(0.25)
    raise AssertionError(f"replicas not ready: {body}")


@contextmanager
def replicated_app(url: str, name: str, config: ServerConfig, replicas: int = 2,
                   num_cpus: float = 0.5, route_prefix: str = "/") -> Iterator[str]:
    """`build_app(config, replicas)` deployed under `route_prefix`; yields its URL once every
    replica is ready, and deletes the application after."""
    from ray import serve

    from chatstream.ray import ReplicaResources, build_app

    app = build_app(config, replicas=replicas, resources=ReplicaResources(num_cpus=num_cpus, num_threads=1),
                    probe_interval_s=0.5)
    serve.run(app, name=name, route_prefix=route_prefix)
    app_url = url + route_prefix.rstrip("/")
    try:
        wait_for_replicas(app_url, replicas)
        yield app_url
    finally:
        serve.delete(name)
