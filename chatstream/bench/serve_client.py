"""Sending the chat workload to an OpenAI-compatible server and timing every streamed chunk.

Owns `RequestRecord` (what one request measured) and `run_load`: open-loop Poisson arrivals at a
rate, or a closed loop that keeps a fixed number of requests in flight. Each request is
`POST {base_url}/chat/completions` with `stream: true`, greedy, `max_tokens` from the workload and
`ignore_eos` (so every server writes the same number of tokens), and asks for the usage chunk so
the token count is the server's own. Times are taken when each SSE chunk with content arrives.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx

from chatstream.bench.chat_workload import ChatRequest, poisson_arrivals


@dataclass
class RequestRecord:
    conversation: int
    turn: int
    sent_s: float  # since the run's start
    ok: bool = False
    error: str | None = None
    chunk_times: list[float] = field(default_factory=list)  # arrival of each content chunk, since sent_s
    output_tokens: int = 0
    prompt_tokens: int = 0
    end_s: float = 0.0  # since sent_s

    @property
    def ttft_s(self) -> float | None:
        return self.chunk_times[0] if self.chunk_times else None

    @property
    def itls_s(self) -> list[float]:
        return [b - a for a, b in zip(self.chunk_times, self.chunk_times[1:])]


async def _send(client: httpx.AsyncClient, model: str, req: ChatRequest, t0: float) -> RequestRecord:
    record = RequestRecord(req.conversation, req.turn, time.perf_counter() - t0)
    body = {"model": model, "messages": req.messages, "max_tokens": req.max_tokens, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
    start = time.perf_counter()
    try:
        async with client.stream("POST", "/chat/completions", json=body) as response:
            if response.status_code != 200:
                record.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return record
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("usage"):
                    record.output_tokens = chunk["usage"].get("completion_tokens", 0)
                    record.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
                if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                    record.chunk_times.append(time.perf_counter() - start)
        record.end_s = time.perf_counter() - start
        record.ok = bool(record.chunk_times)
        if not record.ok:
            record.error = "no content streamed"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    return record


async def run_load(base_url: str, model: str, requests: list[ChatRequest], *, rate: float | None = None,
                   concurrency: int | None = None, seed: int = 0, timeout_s: float = 600.0) -> list[RequestRecord]:
    """Send every request, open loop at `rate` req/s (Poisson) or closed loop with `concurrency` in flight."""
    if (rate is None) == (concurrency is None):
        raise ValueError("give exactly one of rate and concurrency")
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s, limits=limits) as client:
        t0 = time.perf_counter()
        if rate is not None:
            arrivals = poisson_arrivals(len(requests), rate, seed)

            async def at(when: float, req: ChatRequest) -> RequestRecord:
                await asyncio.sleep(max(0.0, t0 + when - time.perf_counter()))
                return await _send(client, model, req, t0)

            return list(await asyncio.gather(*(at(w, r) for w, r in zip(arrivals, requests))))
        queue = list(reversed(requests))
        records: list[RequestRecord] = []

        async def worker() -> None:
            while queue:
                records.append(await _send(client, model, queue.pop(), t0))

        await asyncio.gather(*(worker() for _ in range(concurrency or 1)))
        return records
