"""The warm-up: one short request through a new engine before it serves anyone.

The first forward passes of a process pay for one-time work (the math library's kernels and
thread pools, the attention kernel's first call, allocator growth). A server runs one tiny greedy
request (a prefill and a few decodes) at start-up, so its first user does not pay. Afterwards the
engine's totals are reset, so metrics count only real requests; the warm-up's KV blocks are freed
like any finished request's.
"""

from __future__ import annotations

from chatstream.engine.block_manager import PrefixCacheStats
from chatstream.engine.engine_core import EngineCore
from chatstream.engine.sampling_params import SamplingParams
from chatstream.engine.stats import EngineCounters
from chatstream.startup import StartupPhase

WARMUP_REQUEST_ID = "chatstream-warmup"
WARMUP_PROMPT_TOKENS = 8
WARMUP_OUTPUT_TOKENS = 4


def warm_up(core: EngineCore) -> None:
    """Run the warm-up request to its end on `core` (in the calling thread, before the engine
    thread starts) and reset the engine's totals."""
    with StartupPhase("warmup", "warming up the engine (one short request)"):
        length = min(WARMUP_PROMPT_TOKENS, core.max_model_len - WARMUP_OUTPUT_TOKENS - 1)
        prompt = [1 + i % (core.vocab_size - 1) for i in range(max(1, length))]
        params = SamplingParams(max_tokens=WARMUP_OUTPUT_TOKENS, temperature=0.0, ignore_eos=True)
        core.add_request(WARMUP_REQUEST_ID, prompt, params)
        while core.has_unfinished_requests():
            core.step()
        core.stats = EngineCounters()
        core.block_manager.stats = PrefixCacheStats()
        core.scheduler.num_preemptions = 0
