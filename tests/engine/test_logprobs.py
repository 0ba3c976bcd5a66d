"""Log-probs from the engine equal log_softmax of HF's own logits for the same tokens (fp32, 1e-4).

Every tiny family, generated tokens (greedy and sampled) in one batch of mixed requests under a KV
cache so small that requests are preempted and a step budget that chunks prompts, and prompt
tokens (as `echo` needs them), also when the prompt's prefix sits in the prefix cache (such a
request skips the cache: every prompt token's logits are computed). The real SmolLM2 is checked too.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from chatstream import LLM, SamplingParams
from chatstream.engine.logprobs import TokenLogprobs, logprobs_of

TOLERANCE = 1e-4
NUM_TOP = 5


@torch.no_grad()
def _hf_logprobs(model, ids: list[int]) -> torch.Tensor:
    """[len(ids), V]: row p is log_softmax of HF's logits after ids[: p + 1]."""
    logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0].float()
    return torch.log_softmax(logits, dim=-1).cpu()


def _check_position(entry: TokenLogprobs, reference: torch.Tensor, token: int, num_top: int) -> None:
    assert entry.token_id == token
    assert abs(entry.logprob - float(reference[token])) < TOLERANCE
    assert entry.rank == int((reference > reference[token] + TOLERANCE).sum()) + 1 or \
        abs(float(reference.sort(descending=True).values[entry.rank - 1]) - entry.logprob) < TOLERANCE
    assert len(entry.top) == num_top
    best = reference.topk(num_top).values
    for k, (top_id, top_lp) in enumerate(entry.top):
        assert abs(top_lp - float(reference[top_id])) < TOLERANCE  # the value is that token's
        assert abs(top_lp - float(best[k])) < TOLERANCE  # and it is the k-th best (ties may swap ids)


def _prompts(tokenizer, lengths: list[int], seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    special = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in special]
    return [[rng.choice(ids) for _ in range(n)] for n in lengths]


def _check_output(model, prompt: list[int], out, num_top: int, with_prompt: bool) -> None:
    completion = out.outputs[0]
    tokens = completion.token_ids
    reference = _hf_logprobs(model, prompt + tokens)
    assert completion.logprobs is not None and len(completion.logprobs) == len(tokens)
    for i, (entry, token) in enumerate(zip(completion.logprobs, tokens)):
        _check_position(entry, reference[len(prompt) - 1 + i], token, num_top)
    if with_prompt:
        assert out.prompt_logprobs is not None and len(out.prompt_logprobs) == len(prompt)
        assert out.prompt_logprobs[0] is None
        for p in range(1, len(prompt)):
            _check_position(out.prompt_logprobs[p], reference[p - 1], prompt[p], num_top)


def test_generated_and_prompt_logprobs_equal_hf_in_a_preempted_chunked_batch(tiny_family, tiny_model_factory):
    model, tokenizer = tiny_model_factory(tiny_family)
    reference_model, _ = tiny_model_factory(tiny_family)  # the engine patches the model it serves
    # 10 blocks of 8 tokens for 6 requests of up to ~70 tokens: preemption is certain.
    llm = LLM(model, tokenizer, block_size=8, num_kv_blocks=10, max_num_batched_tokens=16)
    prompts = _prompts(tokenizer, [3, 9, 17, 30, 41, 1], seed=7)
    params = [SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, logprobs=NUM_TOP,
                             prompt_logprobs=NUM_TOP),
              SamplingParams(max_tokens=24, temperature=1.0, seed=3, ignore_eos=True, logprobs=NUM_TOP),
              SamplingParams(max_tokens=24, temperature=0.7, top_k=20, seed=4, ignore_eos=True, logprobs=0,
                             prompt_logprobs=0),
              SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True),  # asks for none: batched along
              SamplingParams(max_tokens=24, temperature=1.3, seed=5, ignore_eos=True, logprobs=NUM_TOP,
                             prompt_logprobs=NUM_TOP),
              SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True, logprobs=1, prompt_logprobs=1)]
    outputs = llm.generate(prompts, params)
    assert llm.engine.scheduler.num_preemptions > 0
    assert llm.engine.block_manager.num_used_blocks == 0
    for prompt, p, out in zip(prompts, params, outputs):
        if p.logprobs is None:
            assert out.outputs[0].logprobs is None and out.prompt_logprobs is None
            continue
        _check_output(reference_model, prompt, out, p.logprobs, p.prompt_logprobs is not None)


def test_prompt_logprobs_are_right_when_the_prefix_is_cached(tiny_model_factory):
    model, tokenizer = tiny_model_factory("qwen2")
    reference_model, _ = tiny_model_factory("qwen2")
    llm = LLM(model, tokenizer, block_size=8, num_kv_blocks=64)
    prefix, suffix = _prompts(tokenizer, [40, 7], seed=11)
    llm.generate([prefix], SamplingParams(max_tokens=2, temperature=0))  # warms the cache with 4 full blocks
    plain, echoed = llm.generate([prefix + suffix] * 2, [
        SamplingParams(max_tokens=4, temperature=0),
        SamplingParams(max_tokens=4, temperature=0, logprobs=2, prompt_logprobs=3)])
    assert plain.num_cached_tokens == 40  # the cache holds the prefix ...
    assert echoed.num_cached_tokens == 0  # ... and the request that needs its logits skips it
    reference = _hf_logprobs(reference_model, prefix + suffix)
    for p in range(1, len(prefix + suffix)):
        _check_position(echoed.prompt_logprobs[p], reference[p - 1], (prefix + suffix)[p], 3)
    assert echoed.outputs[0].token_ids == plain.outputs[0].token_ids


def test_processed_mode_reports_the_distribution_the_sampler_draws_from(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    reference_model, _ = tiny_model_factory("llama")
    llm = LLM(model, tokenizer, num_kv_blocks=32, logprobs_mode="processed")
    prompt = _prompts(tokenizer, [12], seed=3)[0]
    bias = {prompt[0]: 2.5}
    params = SamplingParams(max_tokens=6, temperature=2.0, seed=1, repetition_penalty=1.3, logit_bias=bias,
                            ignore_eos=True, logprobs=3)
    out = llm.generate([prompt], params)[0]
    tokens = out.outputs[0].token_ids
    with torch.no_grad():
        raw = reference_model(input_ids=torch.tensor([prompt + tokens])).logits[0].float()
    for i, entry in enumerate(out.outputs[0].logprobs):
        row = raw[len(prompt) - 1 + i].clone()
        row[prompt[0]] += 2.5
        seen = torch.tensor(sorted(set(prompt + tokens[:i])))
        row[seen] = torch.where(row[seen] > 0, row[seen] / 1.3, row[seen] * 1.3)
        expected = torch.log_softmax(row / 2.0, dim=-1)
        _check_position(entry, expected, tokens[i], 3)


def test_logit_bias_forces_and_bans_tokens(tiny_model_factory):
    model, tokenizer = tiny_model_factory("gpt2")
    llm = LLM(model, tokenizer, num_kv_blocks=32)
    prompt = _prompts(tokenizer, [6], seed=5)[0]
    free = llm.generate([prompt], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))[0].outputs[0]
    banned = free.token_ids[0]
    forced = next(t for t in range(300, 400) if t not in free.token_ids)
    out = llm.generate([prompt] * 2, [
        SamplingParams(max_tokens=8, temperature=0, ignore_eos=True, logit_bias={banned: -100.0}),
        SamplingParams(max_tokens=8, temperature=1.0, seed=2, ignore_eos=True, logit_bias={forced: 100.0})])
    assert banned not in out[0].outputs[0].token_ids[:1]
    assert out[1].outputs[0].token_ids == [forced] * 8


def test_logit_bias_outside_the_vocabulary_is_refused_before_queueing(tiny_model_factory):
    model, tokenizer = tiny_model_factory("llama")
    llm = LLM(model, tokenizer, num_kv_blocks=16)
    with pytest.raises(ValueError, match="logit_bias token id 99999 is out of range"):
        llm.generate([[1, 2, 3]], SamplingParams(logit_bias={99999: 1.0}))
    assert not llm.engine.has_unfinished_requests()
    with pytest.raises(ValueError, match=r"logit_bias values must be in \[-100, 100\]"):
        SamplingParams(logit_bias={5: 101})
    with pytest.raises(ValueError, match=r"logprobs must be None or an integer in \[0, 20\]"):
        SamplingParams(logprobs=21)


def test_logprobs_of_ranks_and_tops():
    logits = torch.tensor([[0.0, 2.0, 1.0, -math.inf], [5.0, 5.0, 0.0, 0.0]])
    first, second = logprobs_of(logits, [2, 1], [2, 0])
    assert first.rank == 2 and [t for t, _ in first.top] == [1, 2]
    assert abs(first.logprob - float(torch.log_softmax(logits[0], -1)[2])) < 1e-6
    assert second.rank == 1 and second.top == ()  # a tie shares the better rank


@pytest.mark.slow
def test_smollm2_logprobs_equal_hf(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    reference_model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    llm = LLM(str(smollm2_dir), dtype="float32", num_kv_blocks=64, max_num_batched_tokens=32)
    prompts = [tokenizer.encode(text) for text in (
        "The capital of France is", "def fibonacci(n):\n    ", "Once upon a time, in a small village,")]
    params = [SamplingParams(max_tokens=12, temperature=0, logprobs=NUM_TOP, prompt_logprobs=NUM_TOP),
              SamplingParams(max_tokens=12, temperature=1.0, seed=9, logprobs=NUM_TOP),
              SamplingParams(max_tokens=12, temperature=0.8, top_p=0.9, seed=2, logprobs=2, prompt_logprobs=2)]
    for prompt, p, out in zip(prompts, params, llm.generate(prompts, params)):
        _check_output(reference_model, prompt, out, p.logprobs, p.prompt_logprobs is not None)
