"""The pieces around the replicas that need no Ray: the shared-store rule, the resource plan,
the merged /metrics, the in-process ASGI call (streaming and disconnect), the CLI's messages."""

from __future__ import annotations

import asyncio
import sys

import pytest
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from chatstream.ray.app_builder import (
    INSTALL_HINT, ReplicaResources, SharedStoreRequired, check_shared_store, plan_resources, require_ray)
from chatstream.ray.asgi_bridge import ProxiedRequest, ResponseStart, call_app
from chatstream.ray.metrics_merge import merge_metrics


@pytest.mark.parametrize("url", ["memory", "sqlite:///chats.db"])
def test_several_replicas_refuse_a_store_of_one_process(url):
    check_shared_store(url, 1)
    with pytest.raises(SharedStoreRequired, match=r"--conversation-store redis://"):
        check_shared_store(url, 2)
    check_shared_store("redis://127.0.0.1:6379/0", 4)


def test_resources_are_a_gpu_each_when_there_are_enough_else_a_share_of_the_cpus():
    assert plan_resources(2, {"CPU": 16, "GPU": 2}) == ReplicaResources(num_cpus=1.0, num_gpus=1.0)
    assert plan_resources(2, {"CPU": 2}) == ReplicaResources(num_cpus=1.0, num_threads=1)
    assert plan_resources(3, {"CPU": 16, "GPU": 2}) == ReplicaResources(num_cpus=5.0, num_threads=5)
    assert plan_resources(4, {"CPU": 2}) == ReplicaResources(num_cpus=0.5, num_threads=1)


def test_without_ray_the_message_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.serve", None)
    with pytest.raises(SystemExit, match=r"pip install 'chatstream\[ray\]'"):
        require_ray()
    assert "chatstream[ray]" in INSTALL_HINT


def test_serve_replicas_with_a_local_store_stops_before_anything_starts(monkeypatch, capsys):
    from chatstream.cli import main

    with pytest.raises(SystemExit, match=r"--conversation-store redis://"):
        main(["serve", "--replicas", "2", "--conversation-store", "memory"])


def test_merged_metrics_label_each_replica_and_keep_one_header_per_family():
    text = ("# HELP chatstream:x_total X.\n# TYPE chatstream:x_total counter\n"
            'chatstream:x_total{model_name="m"} 3.0\n# HELP chatstream:up Up.\n# TYPE chatstream:up gauge\n'
            "chatstream:up 1.0\n")
    merged = merge_metrics({"engine-0": text, "engine-1": text.replace("3.0", "5.0")})
    lines = merged.splitlines()
    assert lines.count("# TYPE chatstream:x_total counter") == 1
    assert lines[2:4] == ['chatstream:x_total{replica="engine-0",model_name="m"} 3.0',
                          'chatstream:x_total{replica="engine-1",model_name="m"} 5.0']
    assert 'chatstream:up{replica="engine-1"} 1.0' in lines
    # Every family's samples follow its own header (the text format's rule).
    assert lines.index('chatstream:up{replica="engine-0"} 1.0') > lines.index("# TYPE chatstream:up gauge")


def test_call_app_streams_chunks_as_sent_and_disconnects_when_closed_early():
    ended = asyncio.Event()
    release = asyncio.Event()

    async def endpoint(request):
        async def body():
            try:
                yield b"one"
                await release.wait()  # never set: only the disconnect ends this stream
                yield b"two"
            finally:
                ended.set()

        return StreamingResponse(body(), headers={"x-a": "1"})

    app = Starlette(routes=[Route("/s", endpoint, methods=["POST"])])

    async def scenario():
        parts = call_app(app, ProxiedRequest("POST", "/s", body=b"{}"))
        start = await parts.__anext__()
        assert isinstance(start, ResponseStart) and start.status == 200 and start.header("X-A") == "1"
        assert await parts.__anext__() == b"one"  # before the response is complete
        await parts.aclose()
        await asyncio.wait_for(ended.wait(), 5)

    asyncio.run(scenario())
