"""Contender (d): transformers' own continuous batching, `model.generate_batch`, where the installed version has it.

Per-token times come from `record_timestamps=True`: each output carries a `perf_counter` stamp per token and the
`created_time` of its request. t0 is the earliest `created_time`, i.e. when the first request was queued, so the
manager's cache allocation and warm-up that `generate_batch` does before queueing are excluded, as every other
contender's start-up is. The KV cache gets the same byte budget as the other paged engines (on CPU transformers
would otherwise reserve 60 % of RAM). EOS is disabled with `eos_token_id=-1`, this API's documented "no EOS".
"""

from __future__ import annotations

from time import perf_counter

import torch
from transformers import GenerationConfig

from chatstream.bench.contenders.hf_model import kv_bytes_per_token, load_causal_lm, pad_token_id
from chatstream.bench.protocol import BenchJob, ContenderRun, RequestTiming

PAGE_SIZE = 16  # tokens per page, the same block size as our engine and vLLM use on CPU


def _cb_config(job: BenchJob, model: torch.nn.Module):  # noqa: ANN202 - class location varies by version
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    per_page = PAGE_SIZE * kv_bytes_per_token(model.config, torch.finfo(model.dtype).bits // 8)
    # Never fewer pages than the workload needs at once, so a too-small budget shows up as memory, not a hang.
    needed = sum(-(-(len(p) + job.output_len) // PAGE_SIZE) for p in job.prompts) + 1
    return ContinuousBatchingConfig(
        page_size=PAGE_SIZE,
        num_blocks=max(needed, job.kv_cache_bytes // per_page),
        max_batch_tokens=job.max_num_batched_tokens,
        auto_switch_to_flash=False,  # CPU: keep the SDPA path the model was loaded with
    )


def _generation_config(model: torch.nn.Module, num_tokens: int) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=num_tokens, do_sample=False, eos_token_id=-1,
                            pad_token_id=pad_token_id(model))


@torch.inference_mode()
def run(job: BenchJob) -> ContenderRun:
    start = perf_counter()
    model = load_causal_lm(job, attn_implementation="sdpa")
    if not hasattr(model, "generate_batch"):
        raise RuntimeError("this transformers version has no generate_batch (continuous batching)")
    if job.warmup:
        model.generate_batch(inputs=[job.warmup_prompt], generation_config=_generation_config(model, 2),
                             continuous_batching_config=_cb_config(job, model))
    startup = perf_counter() - start

    outputs = model.generate_batch(
        inputs=job.prompts,
        generation_config=_generation_config(model, job.output_len),
        continuous_batching_config=_cb_config(job, model),
        record_timestamps=True,
    )
    results = list(outputs.values())  # in input order
    failed = [o.request_id for o in results if o.error is not None]
    if failed or len(results) != len(job.prompts):
        raise RuntimeError(f"generate_batch lost or failed requests: {failed or 'missing outputs'}")
    t0 = min(o.created_time for o in results)
    requests = []
    for out in results:
        times = [stamp - t0 for stamp in out.timestamps] if out.timestamps else None
        finish = times[-1] if times else out.lifespan[1] - t0
        requests.append(RequestTiming(num_output_tokens=len(out.generated_tokens), finish_s=finish,
                                      token_times=times, output_token_ids=list(out.generated_tokens)))
    notes = [] if requests[0].token_times else ["no per-token timestamps in this version: TTFT/ITL n/a"]
    return ContenderRun(requests=requests, startup_s=startup, notes=notes)
