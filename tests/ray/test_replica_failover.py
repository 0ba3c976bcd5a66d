"""Failover: one of two replicas' processes is killed (SIGKILL) while conversations stream.

The streams it was serving end with the error segment (never a hang), the other replica's streams
finish, every conversation's next turn succeeds on a live replica, and the store keeps every
turn: the complete replies as the clients received them, the cut one as `interrupted`. Ray Serve
then starts the killed replica again and the ingress routes to it once it is ready.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("ray.serve")

from chatstream.facade.chat_output import ERROR_MARKER  # noqa: E402
from chatstream.ray.proxy import REPLICA_DIED  # noqa: E402
from chatstream.http.app import ServerConfig  # noqa: E402
from live_server import read_chat_stream, session_client  # noqa: E402
from ray_cluster import local_ray, replicated_app, wait_for_replicas  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NUM_CONVERSATIONS = 6
OPTIONS = {"num_kv_blocks": 256, "max_new_tokens": 120, "temperature": 0.0, "warmup": False, "device": "cpu",
           "num_of_concurrent_executions": 4, "max_queue_size": 16}


@pytest.fixture(scope="module")
def served(tiny_model_dir, redis_server) -> Iterator[str]:
    config = ServerConfig(model=str(tiny_model_dir), model_name="tiny",
                          conversation_store=redis_server.url(db=3) + "?prefix=failover", chat_stream_options=OPTIONS)
    with local_ray(num_cpus=2) as ray_url, replicated_app(ray_url, "failover", config, num_cpus=1.0) as url:
        yield url


class Stream:
    """One /chat_stream turn read in a thread: `first` is set at its first chunk, `done` at its end."""

    def __init__(self, client: httpx.Client, text: str) -> None:
        self.client, self.text = client, text
        self.first, self.done = threading.Event(), threading.Event()
        self.status, self.body, self.replica = 0, "", ""

    def run(self) -> None:
        try:
            with self.client.stream("POST", "/chat_stream", json={"user_input": self.text}) as response:
                self.status, self.replica = response.status_code, response.headers.get("x-chatstream-replica", "")
                for chunk in response.iter_text():
                    self.body += chunk
                    self.first.set()
        finally:
            self.first.set()
            self.done.set()


def test_a_killed_replica_ends_its_streams_and_the_next_turns_run_on_a_live_one(served):
    clients = [session_client(served, timeout=60) for _ in range(NUM_CONVERSATIONS)]
    try:
        # Turn 1, all at once: the conversations spread over both replicas.
        with ThreadPoolExecutor(NUM_CONVERSATIONS) as pool:
            first = list(pool.map(lambda c: c.post("/chat_stream", json={"user_input": "first question"}), clients))
        assert all(r.status_code == 200 for r in first)
        homes = [r.headers["x-chatstream-replica"] for r in first]
        assert set(homes) == {"engine-0", "engine-1"}, homes
        victim = next(r for r in httpx.get(served + "/health").json()["replicas"] if r["replica"] == "engine-0")

        # Turn 2: once every stream has begun, engine-0's process is killed.
        streams = [Stream(client, "second question, a long answer please") for client in clients]
        threads = [threading.Thread(target=s.run) for s in streams]
        for thread in threads:
            thread.start()
        for stream in streams:
            assert stream.first.wait(60)
        unfinished_at_kill = [not s.done.is_set() for s in streams]
        os.kill(victim["pid"], signal.SIGKILL)
        for thread in threads:
            thread.join(90)
        assert all(s.done.is_set() for s in streams)  # no stream hangs

        cut = []
        for stream, home, unfinished in zip(streams, homes, unfinished_at_kill):
            assert stream.status == 200 and stream.replica == home
            last = stream.body.split("<::EOS::>")[-2]
            cut.append(ERROR_MARKER in last)
            if home == "engine-0" and unfinished:
                assert last.endswith(ERROR_MARKER + REPLICA_DIED), last[-80:]
            elif home == "engine-1":
                assert not cut[-1]
        assert any(cut)  # the kill did cut streams in flight

        # Turn 3 of every conversation succeeds at once, on a live replica, from the stored history.
        third = [client.post("/chat_stream", json={"user_input": "third question"}) for client in clients]
        for response in third:
            assert response.status_code == 200, response.text
            assert ERROR_MARKER not in read_chat_stream(response)[-1]
            assert response.headers["x-chatstream-replica"] == "engine-1"

        for client, response, was_cut, third_response in zip(clients, first, cut, third):
            conversation_id = response.headers["x-chatstream-conversation-id"]
            stored = client.get(f"/conversations/{conversation_id}").json()["messages"]
            assert [m["role"] for m in stored] == ["user", "assistant"] * 3
            assert [m["text"] for m in stored[0::2]] == ["first question", "second question, a long answer please",
                                                         "third question"]
            assert stored[1]["text"] == read_chat_stream(response)[-1] and stored[1]["status"] == "complete"
            # The ingress stored the cut reply as interrupted, so turn 3 did not wait for its lease.
            assert stored[3]["status"] == ("interrupted" if was_cut else "complete")
            assert stored[5]["status"] == "complete" and stored[5]["text"] == read_chat_stream(third_response)[-1]
        # Ray Serve starts the killed replica again; the ingress routes to it once it is ready.
        health = wait_for_replicas(served, 2)
        restarted = next(r for r in health["replicas"] if r["replica"] == "engine-0")
        assert restarted["pid"] != victim["pid"]
    finally:
        for client in clients:
            client.close()
