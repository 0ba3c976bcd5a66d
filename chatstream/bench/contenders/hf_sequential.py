"""Contender (b), the baseline: HF `model.generate` serving one request at a time, as the original ChatStream did.

Requests all arrive at t0 and are served in order, so request i's TTFT includes the time it waited for requests
0..i-1: what a client of a one-at-a-time server experiences.
"""

from __future__ import annotations

from time import perf_counter

import torch

from chatstream.bench.contenders.hf_model import TimingStreamer, greedy_config, load_causal_lm
from chatstream.bench.protocol import BenchJob, ContenderRun, RequestTiming


@torch.inference_mode()
def run(job: BenchJob) -> ContenderRun:
    start = perf_counter()
    model = load_causal_lm(job)
    if job.warmup:
        warm = torch.tensor([job.warmup_prompt], device=model.device)
        model.generate(input_ids=warm, attention_mask=torch.ones_like(warm), generation_config=greedy_config(model, 2))
    config = greedy_config(model, job.output_len)
    startup = perf_counter() - start

    requests: list[RequestTiming] = []
    t0 = perf_counter()
    for prompt in job.prompts:
        ids = torch.tensor([prompt], device=model.device)
        streamer = TimingStreamer(t0, batch_size=1)
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config, streamer=streamer)
        requests.extend(streamer.timings())
    return ContenderRun(requests=requests, startup_s=startup)
