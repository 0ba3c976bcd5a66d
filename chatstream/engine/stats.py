"""The engine's numbers: the running totals its thread keeps, and the snapshot it publishes.

`EngineCounters` are written by the one thread that drives the engine, as it serves.
`EngineStats` is an immutable snapshot of the engine taken by that same thread (`EngineStats.of`):
`AsyncEngine` takes one after every step and publishes it by swapping one reference, so the event
loop (metrics, health, start-up reports) reads a consistent picture without ever touching the
scheduler or the block manager, which only the engine thread may read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatstream.engine.engine_core import EngineCore


@dataclass
class EngineCounters:
    """Totals since start-up, kept by the engine thread."""

    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    num_finished_requests: int = 0


@dataclass(frozen=True)
class EngineStats:
    """One moment of an engine, safe to read from any thread.

    num_running / num_waiting: requests in the scheduler's running batch / waiting queue.
    num_preemptions: requests preempted since start-up (their blocks freed for recompute).
    num_kv_blocks / num_free_kv_blocks: KV blocks in all / not held by any request (a free block
        may still hold a cached prefix). block_size tokens each; kv_cache_bytes in all.
    prefix_cache_queries / prefix_cache_hits: prompt tokens looked up in / found in the prefix cache.
    num_prompt_tokens / num_generation_tokens / num_finished_requests: totals since start-up.
    max_model_len: the longest sequence (prompt + output) one request may reach.
    max_num_seqs / max_num_batched_tokens: what one step may run, sequences / tokens (the config's).
    """

    num_running: int = 0
    num_waiting: int = 0
    num_preemptions: int = 0
    num_kv_blocks: int = 0
    num_free_kv_blocks: int = 0
    block_size: int = 0
    kv_cache_bytes: int = 0
    prefix_cache_queries: int = 0
    prefix_cache_hits: int = 0
    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    num_finished_requests: int = 0
    max_model_len: int = 0
    max_num_seqs: int = 0
    max_num_batched_tokens: int = 0

    @property
    def num_used_kv_blocks(self) -> int:
        return self.num_kv_blocks - self.num_free_kv_blocks

    @property
    def kv_cache_usage(self) -> float:
        """Fraction of the KV blocks held by requests (0..1)."""
        return self.num_used_kv_blocks / self.num_kv_blocks if self.num_kv_blocks else 0.0

    @property
    def kv_cache_tokens(self) -> int:
        return self.num_kv_blocks * self.block_size

    @classmethod
    def of(cls, core: EngineCore) -> EngineStats:
        """The snapshot of `core` now; only the thread that drives `core` may call this."""
        scheduler, blocks, counters = core.scheduler, core.block_manager, core.stats
        return cls(
            num_running=scheduler.num_running, num_waiting=scheduler.num_waiting,
            num_preemptions=scheduler.num_preemptions, num_kv_blocks=blocks.num_blocks,
            num_free_kv_blocks=blocks.num_free_blocks, block_size=blocks.block_size,
            kv_cache_bytes=core.kv_cache.size_bytes, prefix_cache_queries=blocks.stats.queries,
            prefix_cache_hits=blocks.stats.hits, num_prompt_tokens=counters.num_prompt_tokens,
            num_generation_tokens=counters.num_generation_tokens,
            num_finished_requests=counters.num_finished_requests, max_model_len=core.max_model_len,
            max_num_seqs=core.config.max_num_seqs, max_num_batched_tokens=core.config.max_num_batched_tokens,
        )
