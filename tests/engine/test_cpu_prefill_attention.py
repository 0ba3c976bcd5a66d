"""The compiled prompt-chunk kernel against SDPA over the same gathered blocks: several chunks in one call, with
and without cached context, head sizes 16 to 128, one to nine query heads per KV head, block sizes that do and
do not divide the kernel's 32-key passes, fp32 and bf16; rows outside the chunks untouched; the same bits at
any thread count; indices that point outside the tensors refused; and the engine's steps through it equal to
its steps through SDPA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from chatstream import LLM, SamplingParams
from chatstream.engine.attention_metadata import additive_mask, gather_blocks

SHAPES = [  # (num_heads, num_kv_heads, head_dim, block_size)
    (9, 3, 64, 16), (4, 2, 16, 16), (8, 2, 64, 8), (4, 4, 128, 16), (6, 1, 128, 32), (6, 2, 48, 5),
    (9, 1, 32, 16), (2, 2, 96, 7), (16, 2, 80, 16),
]
# (tokens in the chunk, tokens already cached): no context, contexts ending inside and on a 32-key pass,
# one-token chunks, chunks longer than a task's sixteen tokens.
CHUNKS = [(37, 0), (5, 70), (100, 333), (1, 3), (64, 16), (17, 31), (16, 32), (2, 0)]
SENTINEL = 7.0


def _case(num_heads: int, num_kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype,
          chunks: list[tuple[int, int]], lead: int = 3) -> dict:
    """Caches with shuffled block tables, and a step's q in which the chunks follow `lead` other rows."""
    gen = torch.Generator().manual_seed(head_dim * 100 + num_heads * 10 + block_size)
    needed = [-(-(n + done) // block_size) for n, done in chunks]
    num_blocks = sum(needed) + 5
    k_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen).to(dtype)
    v_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen).to(dtype)
    order = torch.randperm(num_blocks, generator=gen)
    tables, starts, first_block, row = [], [], 0, lead
    for (n, _), count in zip(chunks, needed):
        tables.append(order[first_block:first_block + count])
        starts.append(row)
        first_block += count
        row += n
    width = max(needed) + 2  # padding past what each chunk needs
    padded = torch.zeros(len(chunks), width, dtype=torch.long)
    for i, t in enumerate(tables):
        padded[i, :len(t)] = t
    q = (2 * torch.randn(row + 2, num_heads, head_dim, generator=gen)).to(dtype)
    return dict(q=q, k=k_cache, v=v_cache, tables=tables, padded=padded, starts=starts,
                lens=[n for n, _ in chunks], computed=[done for _, done in chunks], scale=head_dim**-0.5)


def _run(ops, c: dict) -> tuple[bool, torch.Tensor]:
    out = torch.full_like(c["q"], SENTINEL)
    ran = ops.paged_prefill_attention(c["q"], out, c["k"], c["v"], c["padded"], torch.tensor(c["starts"]),
                                         torch.tensor(c["lens"]), torch.tensor(c["computed"]), c["scale"])
    return ran, out


def _want(c: dict, i: int) -> torch.Tensor:
    start, n, done = c["starts"][i], c["lens"][i], c["computed"][i]
    ctx = done + n
    k = gather_blocks(c["k"], c["tables"][i])[:, :ctx].float().unsqueeze(0)  # [1, KVH, ctx, hd]
    v = gather_blocks(c["v"], c["tables"][i])[:, :ctx].float().unsqueeze(0)
    q = c["q"][start:start + n].float().transpose(0, 1).unsqueeze(0)  # [1, H, n, hd]
    mask = additive_mask(torch.arange(ctx)[None, :] <= torch.arange(done, ctx)[:, None], torch.float32)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=c["scale"], enable_gqa=True)[0].transpose(0, 1)


def _vector_path(ops, c: dict) -> torch.Tensor:
    ran, out = _run(ops, c)
    if not ran:
        pytest.skip("no AVX-512 here: prompt chunks go through SDPA")
    return out


@pytest.mark.parametrize(("num_heads", "num_kv_heads", "head_dim", "block_size"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kernel_matches_sdpa(cpu_ops, num_heads: int, num_kv_heads: int, head_dim: int, block_size: int,
                             dtype: torch.dtype) -> None:
    c = _case(num_heads, num_kv_heads, head_dim, block_size, dtype, CHUNKS)
    out = _vector_path(cpu_ops, c)
    for i, (start, n) in enumerate(zip(c["starts"], c["lens"])):
        got = out[start:start + n].float()
        if dtype == torch.float32:
            torch.testing.assert_close(got, _want(c, i), atol=1e-5, rtol=1e-4)
        else:  # the inputs are the same bf16 values; the output's rounding to bf16 differs
            torch.testing.assert_close(got, _want(c, i), atol=2e-2, rtol=2e-2)
    end = c["starts"][-1] + c["lens"][-1]
    assert (out[:c["starts"][0]] == SENTINEL).all() and (out[end:] == SENTINEL).all()


def test_same_bits_at_any_thread_count(cpu_ops) -> None:
    c = _case(9, 3, 64, 16, torch.float32, [(300, 200), (45, 0), (130, 700)])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _vector_path(cpu_ops, c)
        for threads in (2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(_run(cpu_ops, c)[1], one)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("head_dim", [8, 24, 144])
def test_other_head_sizes_are_left_to_sdpa(cpu_ops, head_dim: int) -> None:
    c = _case(4, 2, head_dim, 16, torch.float32, [(20, 10)])
    ran, out = _run(cpu_ops, c)
    assert not ran and (out == SENTINEL).all()


def test_contexts_past_exact_float_positions_are_left_to_sdpa(cpu_ops) -> None:
    # The kernel compares positions as floats; 2^24 is the first integer past which that is not exact.
    c = _case(4, 2, 16, 16, torch.float32, [(3, 0)])
    c["computed"][0] = 2**24
    c["padded"] = torch.zeros(1, 2**20 + 1, dtype=torch.long)  # block 0 for every position: every index is valid
    ran, out = _run(cpu_ops, c)
    assert not ran and (out == SENTINEL).all()


@pytest.mark.parametrize("field, value", [
    ("tables", 10_000), ("tables", -1), ("starts", 1_000), ("starts", -1), ("lens", 0), ("computed", -1),
    ("computed", 10_000),
])
def test_indices_outside_the_tensors_are_refused(cpu_ops, field: str, value: int) -> None:
    c = _case(4, 2, 16, 16, torch.float32, [(20, 10), (5, 0)])
    if field == "tables":
        c["padded"][0, 0] = value
    else:
        c[field][0] = value
    with pytest.raises(RuntimeError):
        _run(cpu_ops, c)


def _engine_outputs(model, tokenizer, use_kernel: bool, dtype: torch.dtype, counted: list[int]):
    llm = LLM(model=model.to(dtype), tokenizer=tokenizer, num_kv_blocks=64, block_size=4, max_num_batched_tokens=24)
    runner = llm.engine.runner.model_runner
    assert runner.fused is not None
    kernel = runner.prefill_kernel
    if kernel is None:
        pytest.skip("no C++ compiler here")

    def attend(*args):
        ran = kernel(*args)
        counted.append(int(ran))
        return ran

    runner.prefill_kernel = attend if use_kernel else None
    params = SamplingParams(max_tokens=6, temperature=0.0, ignore_eos=True, logprobs=3)
    first = [5 + (7 * i) % 200 for i in range(40)]
    # A prompt chunked over two steps, a follow-up whose first 40 tokens the prefix cache holds, and two prompts
    # in one step.
    outputs = [llm.generate([first], params)[0], llm.generate([first + [9, 8, 7, 6, 5, 4]], params)[0]]
    outputs += llm.generate([[11, 12, 13], list(range(20, 37))], params)
    return [out.outputs[0] for out in outputs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_engine_steps_through_the_kernel_give_the_sdpa_steps_outputs(cpu_ops, tiny_model_factory, dtype):
    counted: list[int] = []
    with_kernel = _engine_outputs(*tiny_model_factory("llama"), True, dtype, counted)
    with_sdpa = _engine_outputs(*tiny_model_factory("llama"), False, dtype, [])
    if not any(counted):
        pytest.skip("no AVX-512 here: prompt chunks go through SDPA")
    assert all(counted)  # every prompt step of every layer went through the kernel
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    for got, want in zip(with_kernel, with_sdpa):
        if dtype == torch.float32:
            assert got.token_ids == want.token_ids
        for a, b in zip(got.logprobs, want.logprobs):
            assert math.isclose(a.logprob, b.logprob, abs_tol=tolerance)
            if a.token_id != b.token_id:  # bf16: a near-tie may go either way; the rest of that output differs
                break
