"""The disconnect soak and the /health latency measurement: `chatstream bench soak`
(also `python -m chatstream.bench.soak`).

It serves a model with `chatstream serve`'s app (`create_app`, every middleware) on uvicorn in a
thread of this process, and drives it over real HTTP:

1. **Soak.** `--requests` mixed requests from `--concurrency` clients: /chat_stream turns (one
   session per client), streamed and whole /v1 chat and text completions (some with n=2), bad
   requests, /health and /get_load. A `--disconnect-fraction` of them is abandoned by its client
   at a random point: before the answer, or after a few chunks of a stream. Then, once idle, it
   checks what must hold: no run slot or waiting place held, no engine request running or
   waiting, no KV block in use (blocks that only keep a cached prefix count as free), the engine
   alive, and the same greedy reply as before the soak; it reports the RSS before and after.
2. **Health under big prompts** (`--health-phase`): 8 clients send 2 MB prompts to /v1 while one
   session sends 500 KB /chat_stream turns; a prober asks /health every 50 ms and reports its
   latency (p50, p99, max). Client and server share this process, so the figure includes the
   client's own work: an upper bound for the server's.

The numbers go to stdout as JSON (and `--json FILE`); the exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psutil
import uvicorn

MIB = 1024 * 1024
GREEDY = {"prompt": "The capital of France is", "max_tokens": 16, "temperature": 0}


@dataclass
class SoakReport:
    requests: int = 0
    disconnects: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    idle: dict[str, int] = field(default_factory=dict)
    engine_alive: bool = False
    same_greedy_reply: bool = False
    health_ms: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0


class ServedApp:
    """`chatstream serve`'s app on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while httpx.get(self.url + "/health").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the model did not load: " + httpx.get(self.url + "/health").text)
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(60)


# -- one request of the mix ------------------------------------------------------------------------
async def _one(client: httpx.AsyncClient, rng: random.Random, session: dict[str, str], leave: bool) -> str:
    kind = rng.choice(["chat_stream", "chat_stream", "v1_chat_stream", "v1_chat", "v1_completion_n2",
                       "v1_completion_stream", "bad", "health"])
    text = rng.choice(["Hello!", "Tell me about the sea.", "What is 2 + 2?", "Write a haiku about rain."])
    if kind == "chat_stream":
        return await _stream(client, "/chat_stream", {"user_input": text}, rng, leave, cookies=session)
    if kind == "v1_chat_stream":
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": 24, "stream": True}
        return await _stream(client, "/v1/chat/completions", body, rng, leave)
    if kind == "v1_completion_stream":
        return await _stream(client, "/v1/completions", {"prompt": text, "max_tokens": 24, "stream": True}, rng, leave)
    if kind == "bad":
        body = rng.choice(['{"prompt": [[false]]}', '{"prompt": "a\\ud800"}', "[" * 5000, '{"n": 99, "prompt": "x"}'])
        return await _whole(client, "/v1/completions", body.encode(), rng, leave)
    if kind == "health":
        response = await client.get("/health" if rng.random() < 0.5 else "/get_load")
        return str(response.status_code)
    body = ({"messages": [{"role": "user", "content": text}], "max_tokens": 16} if kind == "v1_chat"
            else {"prompt": text, "max_tokens": 16, "n": 2})
    path = "/v1/chat/completions" if kind == "v1_chat" else "/v1/completions"
    return await _whole(client, path, json.dumps(body).encode(), rng, leave)


async def _stream(client: httpx.AsyncClient, path: str, body: dict[str, Any], rng: random.Random, leave: bool,
                  cookies: dict[str, str] | None = None) -> str:
    keep = rng.randint(0, 3) if leave else None
    try:
        async with client.stream("POST", path, json=body, cookies=cookies) as response:
            if response.status_code == 200 and "set-cookie" in response.headers and cookies is not None:
                name, _, rest = response.headers["set-cookie"].partition("=")
                cookies[name] = rest.split(";", 1)[0]
            if keep == 0:
                return "left"
            chunks = 0
            async for _ in response.aiter_raw():
                chunks += 1
                if keep is not None and chunks >= keep:
                    return "left"  # leaving the block closes the connection mid-stream
            return str(response.status_code)
    except httpx.TransportError as exc:
        return type(exc).__name__


async def _whole(client: httpx.AsyncClient, path: str, body: bytes, rng: random.Random, leave: bool) -> str:
    request = client.post(path, content=body, headers={"Content-Type": "application/json"})
    if not leave:
        return str((await request).status_code)
    try:
        await asyncio.wait_for(request, timeout=rng.uniform(0.001, 0.2))  # gone before (or just as) it answers
    except asyncio.TimeoutError:
        pass
    return "left"


# -- phases --------------------------------------------------------------------------------------------
async def soak(url: str, num_requests: int, disconnect_fraction: float, concurrency: int, seed: int,
               report: SoakReport) -> None:
    rng = random.Random(seed)
    plan = [rng.random() < disconnect_fraction for _ in range(num_requests)]
    report.disconnects = sum(plan)
    queue: asyncio.Queue[bool] = asyncio.Queue()
    for leave in plan:
        queue.put_nowait(leave)

    async def worker(index: int) -> None:
        session: dict[str, str] = {}
        worker_rng = random.Random(seed * 1000 + index)
        # One client per worker; a request it abandons closes its own connection (httpx does not
        # reuse a connection whose response was not read to the end).
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while not queue.empty():
                leave = queue.get_nowait()
                outcome = await _one(client, worker_rng, session, leave)
                report.statuses[outcome] = report.statuses.get(outcome, 0) + 1
                report.requests += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


async def health_under_big_prompts(url: str, num_big: int = 3, num_turns: int = 3) -> dict[str, float]:
    """/health latency while 8 clients send 2 MB prompts and one session sends 500 KB turns."""
    big = json.dumps({"prompt": "lorem ipsum " * (2 * MIB // 12), "max_tokens": 4}).encode()
    turn_text = "dolor sit amet " * (500 * 1024 // 15)
    latencies: list[float] = []
    done = asyncio.Event()

    async def prober() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while not done.is_set():
                start = time.perf_counter()
                await client.get("/health")
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

    async def big_client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            for _ in range(num_big):
                await client.post("/v1/completions", content=big, headers={"Content-Type": "application/json"})

    async def session_client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            for _ in range(num_turns):
                async with client.stream("POST", "/chat_stream", json={"user_input": turn_text}) as response:
                    async for _ in response.aiter_raw():
                        pass

    probe = asyncio.ensure_future(prober())
    await asyncio.gather(*(big_client() for _ in range(8)), session_client())
    done.set()
    await probe
    ordered = sorted(latencies)
    return {"probes": len(ordered), "p50": 1000 * statistics.median(ordered),
            "p99": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], "max": 1000 * ordered[-1]}


def idle_numbers(app: Any) -> dict[str, int]:
    chat_stream = app.state.server.chat_stream
    stats = chat_stream.engine.stats
    return {"admission_running": chat_stream.admission.num_running,
            "admission_waiting": chat_stream.admission.num_waiting,
            "engine_running": stats.num_running, "engine_waiting": stats.num_waiting,
            "kv_blocks_in_use": stats.num_used_kv_blocks}


def wait_idle(app: Any, timeout: float = 60.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        numbers = idle_numbers(app)
        if not any(numbers.values()) or time.monotonic() > deadline:
            return numbers
        time.sleep(0.05)


def greedy_reply(url: str) -> str:
    response = httpx.post(url + "/v1/completions", json=GREEDY, timeout=120)
    response.raise_for_status()
    return response.json()["choices"][0]["text"]


def rss_mib() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / MIB


def run_soak(app: Any, num_requests: int, disconnect_fraction: float = 0.3, concurrency: int = 16, seed: int = 0,
             health_phase: bool = False) -> SoakReport:
    """Serve `app` (from `create_app`), soak it, and check the idle state; see the module docstring."""
    report = SoakReport()
    start = time.perf_counter()
    with ServedApp(app) as served:
        before = greedy_reply(served.url)
        asyncio.run(soak(served.url, 20, 0.0, 4, seed + 1, SoakReport()))  # warm-up, not counted
        report.rss_before_mib = rss_mib()
        asyncio.run(soak(served.url, num_requests, disconnect_fraction, concurrency, seed, report))
        report.idle = wait_idle(app)
        report.engine_alive = bool(app.state.server.chat_stream.engine.is_running)
        report.same_greedy_reply = greedy_reply(served.url) == before
        report.rss_after_mib = rss_mib()
        if health_phase:
            report.health_ms = asyncio.run(health_under_big_prompts(served.url))
            wait_idle(app)
    report.seconds = time.perf_counter() - start
    report.failures = [f"{name} = {value} at idle" for name, value in report.idle.items() if value]
    if not report.engine_alive:
        report.failures.append("the engine died")
    if not report.same_greedy_reply:
        report.failures.append("the greedy reply changed")
    if any(status.startswith("5") for status in report.statuses):
        report.failures.append(f"5xx answers: {report.statuses}")
    return report


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="smollm2", help="what `chatstream serve --model` takes (smollm2)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--disconnect-fraction", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--num-concurrent", type=int, default=8, help="the server's run slots")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--num-kv-blocks", type=int, default=None,
                        help="KV blocks (default: sized for the machine; its pages become resident as blocks are "
                             "first used, which the RSS figure then includes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--health-phase", action="store_true", help="also measure /health under big prompts")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report here")


def run_soak_command(args: argparse.Namespace) -> int:
    from chatstream.http.app import ServerConfig, create_app

    options: dict[str, Any] = {"num_of_concurrent_executions": args.num_concurrent, "max_queue_size": 256,
                               "max_new_tokens": args.max_new_tokens, "temperature": 0.7, "context_len": None}
    if args.num_kv_blocks:
        options["num_kv_blocks"] = args.num_kv_blocks
    app = create_app(ServerConfig(model=args.model, chat_stream_options=options))
    report = run_soak(app, args.requests, args.disconnect_fraction, args.concurrency, args.seed, args.health_phase)
    text = json.dumps(asdict(report), indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")
    return 1 if report.failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatstream bench soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_soak_arguments(parser)
    return run_soak_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
