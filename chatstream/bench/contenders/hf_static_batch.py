"""Contender (c): HF `model.generate` on one static batch holding every request, left-padded to a common length.

Every request gets its first token when the batch's first step ends and its last when the whole batch ends; the
padding (none when all prompts have the same length) is computed but wasted.
"""

from __future__ import annotations

from time import perf_counter

import torch

from chatstream.bench.contenders.hf_model import TimingStreamer, greedy_config, load_causal_lm, pad_token_id
from chatstream.bench.protocol import BenchJob, ContenderRun


def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), padded on the left so every row's last token is its real last token."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    return ids, mask


@torch.inference_mode()
def run(job: BenchJob) -> ContenderRun:
    start = perf_counter()
    model = load_causal_lm(job)
    pad_id = pad_token_id(model)
    if job.warmup:
        warm = torch.tensor([job.warmup_prompt], device=model.device)
        model.generate(input_ids=warm, attention_mask=torch.ones_like(warm), generation_config=greedy_config(model, 2))
    config = greedy_config(model, job.output_len)
    startup = perf_counter() - start

    t0 = perf_counter()
    ids, mask = (t.to(model.device) for t in left_padded(job.prompts, pad_id))
    streamer = TimingStreamer(t0, batch_size=len(job.prompts))
    model.generate(input_ids=ids, attention_mask=mask, generation_config=config, streamer=streamer)
    return ContenderRun(requests=streamer.timings(), startup_s=startup)
