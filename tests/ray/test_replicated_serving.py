"""Two engine replicas on a local Ray (`num_cpus=2`) behind one ingress, conversations in a real
redis-server: 20 concurrent conversations x 3 turns over /chat_stream and over the OpenAI API
(the `openai` client). Every turn of a conversation is served by one replica, both replicas
serve, and every greedy reply equals what one engine (a plain `create_app` server) gives for
the same history; the prefix cache's hit rate per replica is read from /metrics and reported.
A burst against two replicas of the generator mock gets exactly the 429s that their lines leave.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("ray.serve")

from chatstream import ChatPromptTogetherRedPajamaINCITEChat  # noqa: E402
from chatstream.http.app import ServerConfig, create_app  # noqa: E402
from live_server import OPEN_ROLES, LiveServer, read_chat_stream, session_client  # noqa: E402
from ray_cluster import local_ray, replicated_app, wait_ready  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]

NUM_CONVERSATIONS, NUM_TURNS = 20, 3
REPLICAS = ("engine-0", "engine-1")
OPTIONS = {"num_kv_blocks": 128, "max_new_tokens": 8, "temperature": 0.0, "warmup": False, "device": "cpu",
           "num_of_concurrent_executions": 4, "max_queue_size": 40, "client_roles": OPEN_ROLES}


def _config(model_dir: str, store_url: str) -> ServerConfig:
    return ServerConfig(model=model_dir, model_name="tiny", conversation_store=store_url,
                        chat_stream_options=OPTIONS)


@pytest.fixture(scope="module")
def ray_url() -> Iterator[str]:
    with local_ray(num_cpus=2) as url:
        yield url


@pytest.fixture(scope="module")
def served(ray_url: str, tiny_model_dir, redis_server) -> Iterator[str]:
    config = _config(str(tiny_model_dir), redis_server.url(db=1) + "?prefix=replicated")
    with replicated_app(ray_url, "tiny", config, num_cpus=0.5) as url:
        yield url


@pytest.fixture(scope="module")
def one_engine(tiny_model_dir) -> Iterator[str]:
    """The reference: the same model and options as one `chatstream serve` in this process."""
    with LiveServer(create_app(_config(str(tiny_model_dir), "memory"))) as live:
        wait_ready(live.url)
        yield live.url


def _chat_stream_conversation(url: str, i: int) -> list[tuple[str, str]]:
    """One original client (a session cookie, no conversation id): (reply, replica) per turn."""
    turns = []
    with session_client(url, timeout=120) as client:
        for turn in range(NUM_TURNS):
            response = client.post("/chat_stream", json={"user_input": f"conversation {i} turn {turn} says hello"})
            assert response.status_code == 200, response.text
            turns.append((read_chat_stream(response)[-1], response.headers.get("x-chatstream-replica", "")))
    return turns


def _all_conversations(fn, url: str) -> list:
    with ThreadPoolExecutor(NUM_CONVERSATIONS) as pool:
        return list(pool.map(lambda i: fn(url, i), range(NUM_CONVERSATIONS)))


def test_chat_stream_conversations_stick_to_one_replica_and_match_one_engine(served, one_engine):
    replicated = _all_conversations(_chat_stream_conversation, served)
    single = _all_conversations(_chat_stream_conversation, one_engine)
    homes = []
    for turns, reference in zip(replicated, single):
        replicas = {replica for _, replica in turns}
        assert len(replicas) == 1 and replicas <= set(REPLICAS), turns
        homes.append(replicas.pop())
        assert [reply for reply, _ in turns] == [reply for reply, _ in reference]
    assert set(homes) == set(REPLICAS), homes  # both replicas served


def _openai_conversation(url: str, i: int) -> list[tuple[str, str]]:
    from openai import OpenAI

    client = OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=120)
    messages: list[dict[str, str]] = [{"role": "system", "content": f"You are assistant number {i}."}]
    turns = []
    for turn in range(NUM_TURNS):
        messages.append({"role": "user", "content": f"conversation {i} turn {turn}"})
        raw = client.chat.completions.with_raw_response.create(model="tiny", messages=messages, max_tokens=8,
                                                               temperature=0)
        reply = raw.parse().choices[0].message.content or ""
        messages.append({"role": "assistant", "content": reply})
        turns.append((reply, raw.headers.get("x-chatstream-replica", "")))
    return turns


def test_openai_conversations_follow_their_prefix_and_match_one_engine(served, one_engine):
    replicated = _all_conversations(_openai_conversation, served)
    single = _all_conversations(_openai_conversation, one_engine)
    homes = []
    for turns, reference in zip(replicated, single):
        replicas = {replica for _, replica in turns}
        assert len(replicas) == 1 and replicas <= set(REPLICAS), turns
        homes.append(replicas.pop())
        assert [reply for reply, _ in turns] == [reply for reply, _ in reference]
    assert set(homes) == set(REPLICAS), homes


def _per_replica(metrics: str, name: str) -> dict[str, float]:
    pattern = re.compile(rf'^{re.escape(name)}{{replica="([^"]+)"[^}}]*}} ([0-9.e+]+)$', re.M)
    return {replica: float(value) for replica, value in pattern.findall(metrics)}


def test_prefix_cache_hit_rate_per_replica_is_reported(served, capsys):
    # Runs after the conversations above: their later turns found the earlier ones in the cache.
    metrics = httpx.get(served + "/metrics", timeout=30).text
    queries = _per_replica(metrics, "chatstream:prefix_cache_queries_total")
    hits = _per_replica(metrics, "chatstream:prefix_cache_hits_total")
    assert set(queries) == set(REPLICAS) == set(hits)
    with capsys.disabled():
        for replica in REPLICAS:
            rate = hits[replica] / queries[replica]
            print(f"\nprefix cache, {replica}: {hits[replica]:.0f} of {queries[replica]:.0f} prompt tokens "
                  f"({rate:.0%})")
            assert queries[replica] > 0 and 0.3 < rate <= 1.0
    up = _per_replica(metrics, "chatstream:replica_up")
    assert up == {replica: 1.0 for replica in REPLICAS}


def test_get_load_lists_each_replica_and_their_sum(served):
    body = httpx.get(served + "/get_load", timeout=30).json()
    assert [w["replica"] for w in body["chatstream_workers"]] == list(REPLICAS)
    assert body["total"]["max_processing"] == 2 * OPTIONS["num_of_concurrent_executions"]
    assert body["total"]["max_waiting"] == 2 * OPTIONS["max_queue_size"]
    health = httpx.get(served + "/health", timeout=30).json()
    assert health["status"] == "ready" and [r["status"] for r in health["replicas"]] == ["ready", "ready"]


def test_the_page_and_the_rest_of_the_surface_are_served_through_the_ingress(served):
    page = httpx.get(served + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-chatstream-replica"] in REPLICAS
    models = httpx.get(served + "/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    bad = httpx.post(served + "/v1/chat/completions", json={"model": "tiny", "messages": [], "max_tokens": -1})
    assert bad.status_code == 400 and "x-chatstream-replica" in bad.headers  # the replica's own 4xx, unchanged


def test_a_conversation_named_by_id_stays_on_its_replica(served):
    with session_client(served, timeout=60) as client:
        conversation = client.post("/conversations", json={}).json()
        replicas = set()
        for turn in range(3):
            response = client.post("/chat_stream", json={"user_input": f"turn {turn}",
                                                         "conversation_id": conversation["id"]})
            assert response.status_code == 200, response.text
            replicas.add(response.headers["x-chatstream-replica"])
        stored = client.get(f"/conversations/{conversation['id']}").json()
    assert len(replicas) == 1
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"] * 3


def test_a_burst_is_refused_only_beyond_every_replicas_line_and_disconnects_free_the_lines(ray_url, redis_server):
    """Two replicas of the generator mock (a long reply, slowly), each running 1 and keeping 2
    waiting: of 14 requests sent at once exactly 2 x (1 + 2) = 6 are taken and 8 get 429 with
    Retry-After. Every taken client then leaves after its first chunk: the replicas' lines empty
    long before any of those replies could have ended, so each disconnect reached its replica."""
    burst, capacity, running = 14, 2 * (1 + 2), 2
    options = {"use_mock_response": True, "mock_params": {"type": "long", "time_per_token_sec": 0.2},
               "num_of_concurrent_executions": 1, "max_queue_size": 2, "client_roles": OPEN_ROLES}
    config = ServerConfig(chat_prompt=ChatPromptTogetherRedPajamaINCITEChat, model_name="mock",
                          conversation_store=redis_server.url(db=2) + "?prefix=burst",
                          chat_stream_options=options)
    with replicated_app(ray_url, "burst", config, num_cpus=0.5, route_prefix="/burst") as url:
        all_sent, release = threading.Barrier(burst), threading.Event()
        answered = threading.Semaphore(0)

        def one(i: int) -> tuple[int, str | None, str]:
            with session_client(url, timeout=120) as client:
                all_sent.wait()
                with client.stream("POST", "/chat_stream", json={"user_input": f"request {i}"}) as response:
                    if response.status_code == 429:
                        answered.release()
                        return 429, response.headers.get("retry-after"), json.loads(response.read())["error"]
                    # The iterator is held: dropping it closes httpcore's stream, and so the
                    # connection, which would free this slot before the burst is settled.
                    chunks = response.iter_text()
                    first = next(chunks)
                    answered.release()
                    release.wait(60)  # keeps its slot until every request has been answered or queued
                    chunks.close()
                    return response.status_code, response.headers.get("x-chatstream-replica"), first

        with ThreadPoolExecutor(burst) as pool:
            futures = [pool.submit(one, i) for i in range(burst)]
            for _ in range(burst - capacity + running):  # the refusals and the running; the rest wait
                assert answered.acquire(timeout=60)
            release.set()  # the running leave, the waiting run and leave in turn
            results = [future.result(timeout=120) for future in futures]

        refused = [r for r in results if r[0] == 429]
        taken = [r for r in results if r[0] == 200]
        assert len(refused) == burst - capacity and len(taken) == capacity, f"every answer: {results}"
        assert all(int(retry_after) >= 1 and error == "too_many_requests" for _, retry_after, error in refused)
        assert {replica for _, replica, _ in taken} == set(REPLICAS)
        deadline = time.monotonic() + 20  # each reply alone runs for minutes
        while (total := httpx.get(url + "/get_load", timeout=30).json()["total"])["processing"] or total["waiting"]:
            assert time.monotonic() < deadline, total
            time.sleep(0.2)
