"""Contender (a): our engine, driven through `EngineCore.add_request` / `step()` so every token is timestamped
as a streaming client would receive it. `chatstream` runs with prefix caching on, `chatstream-noprefix` with it
off; everything else is identical, so the pair isolates what the prefix cache buys. `chatstream-int8` runs with
weight-only int8 linear weights.

Besides timings it reports the KV blocks in use (peak, sampled between steps) against the blocks allocated, and
the prefix-cache hit rate: prompt tokens served from cache / prompt tokens, from the engine's own per-request
`num_cached_tokens`.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

import torch

from chatstream.bench.protocol import BenchJob, ContenderRun, RequestTiming

GIB = 1024**3


def _engine_options(job: BenchJob) -> dict[str, Any]:
    options: dict[str, Any] = {
        "dtype": job.dtype,
        "kv_cache_memory_gb": job.kv_cache_bytes / GIB,
        "max_model_len": job.max_model_len,
        "enable_prefix_caching": job.contender != "chatstream-noprefix",
    }
    if job.contender == "chatstream-int8":
        options["quantization"] = "int8"
    if job.max_num_batched_tokens is not None:
        options["max_num_batched_tokens"] = job.max_num_batched_tokens
    options.update(job.options.get("engine_options", {}))  # the user's --engine-option wins
    return options


@torch.inference_mode()
def run(job: BenchJob) -> ContenderRun:
    from chatstream import LLM, SamplingParams

    torch.set_num_threads(job.threads)
    start = perf_counter()
    llm = LLM(model=job.model, **_engine_options(job))
    engine = llm.engine
    if job.warmup:
        llm.generate([job.warmup_prompt], SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True))
    blocks = engine.block_manager
    if hasattr(blocks, "reset_prefix_cache"):
        blocks.reset_prefix_cache()  # the timed run must not hit anything the warm-up left behind
    stats = getattr(blocks, "stats", None)
    before = (stats.queries, stats.hits) if stats is not None else None
    startup = perf_counter() - start

    params = SamplingParams(max_tokens=job.output_len, temperature=0.0, ignore_eos=True)
    ids = [f"bench-{i}" for i in range(len(job.prompts))]
    times: dict[str, list[float]] = {rid: [] for rid in ids}
    tokens: dict[str, list[int]] = {rid: [] for rid in ids}
    cached: dict[str, int] = dict.fromkeys(ids, 0)
    prompt_tokens: dict[str, int] = {rid: len(p) for rid, p in zip(ids, job.prompts)}
    peak_used = 0
    t0 = perf_counter()
    for rid, prompt in zip(ids, job.prompts):
        engine.add_request(rid, prompt, params)
    while engine.has_unfinished_requests():
        deltas = engine.step()
        now = perf_counter() - t0
        peak_used = max(peak_used, blocks.num_blocks - blocks.num_free_blocks)
        for delta in deltas:
            times[delta.request_id].extend([now] * len(delta.new_token_ids))
            tokens[delta.request_id].extend(delta.new_token_ids)
            cached[delta.request_id] = max(cached[delta.request_id], delta.num_cached_tokens)

    requests = [
        RequestTiming(num_output_tokens=len(tokens[rid]), finish_s=times[rid][-1] if times[rid] else 0.0,
                      token_times=times[rid], output_token_ids=tokens[rid])
        for rid in ids
    ]
    total_prompt = sum(prompt_tokens.values())
    extra = {
        "kv_blocks_used_peak": peak_used,
        "kv_blocks_total": blocks.num_blocks,
        "kv_block_size": getattr(blocks, "block_size", None),
        "prefix_cache_hit_rate": sum(cached.values()) / total_prompt if total_prompt else 0.0,
        "prefix_caching": job.contender != "chatstream-noprefix",
    }
    if before is not None:
        # The block manager's own counters, as a cross-check of the per-request figure above.
        queries, hits = stats.queries - before[0], stats.hits - before[1]
        extra["engine_prefix_cache_hit_rate"] = hits / queries if queries else 0.0
    return ContenderRun(requests=requests, startup_s=startup, extra=extra)
