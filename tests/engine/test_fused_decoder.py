"""The fused layers: each fused operation against PyTorch's, which families take the fused path, and the
engine's output with it against the engine running the model's own modules."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from chatstream import LLM, SamplingParams
from chatstream.engine.fused_decoder import FusedDecoder

FUSED_FAMILIES = ["llama", "mistral", "qwen2"]
UNFUSED_FAMILIES = ["qwen3", "gpt_neox", "gpt2"]



def _close(dtype: torch.dtype):
    # bf16 must be exact: the kernels round where PyTorch's ops round. fp32 differs only in a sum's order.
    return {"atol": 0.0, "rtol": 0.0} if dtype == torch.bfloat16 else {"atol": 2e-6, "rtol": 2e-6}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_rms_norm_is_the_residual_add_then_hf_rmsnorm(cpu_ops, dtype):
    gen = torch.Generator().manual_seed(0)
    x, residual = (torch.randn(7, 96, generator=gen).to(dtype) for _ in range(2))
    weight = torch.randn(96, generator=gen).to(dtype)

    def reference(h):
        variance = h.float().pow(2).mean(-1, keepdim=True)
        return weight * (h.float() * torch.rsqrt(variance + 1e-6)).to(dtype)

    out, h = cpu_ops.add_rms_norm(x, residual, weight, 1e-6)
    assert torch.equal(h, residual + x)
    torch.testing.assert_close(out, reference(residual + x), **_close(dtype))
    out, h = cpu_ops.add_rms_norm(x, torch.empty(0, dtype=dtype), weight, 1e-6)  # the first layer: no residual yet
    assert torch.equal(h, x)
    torch.testing.assert_close(out, reference(x), **_close(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("rows", "width"), [(1, 576), (37, 576), (300, 100), (16, 15)])
def test_add_rms_norm_at_model_widths_and_row_counts(cpu_ops, dtype, rows, width):
    # Widths that are and are not a multiple of the vector width, and enough rows to split between threads.
    gen = torch.Generator().manual_seed(rows + width)
    x, residual = (torch.randn(rows, width, generator=gen).to(dtype) for _ in range(2))
    weight = torch.randn(width, generator=gen).to(dtype)
    strided = torch.cat([x, torch.ones(rows, 3, dtype=dtype)], -1)[:, :width]  # rows of a wider product
    out, h = cpu_ops.add_rms_norm(strided, residual, weight, 1e-5)
    want = weight * ((residual + x).float() * torch.rsqrt((residual + x).float().pow(2).mean(-1, keepdim=True)
                                                          + 1e-5)).to(dtype)
    assert torch.equal(h, residual + x)
    torch.testing.assert_close(out, want, **_close(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_silu_mul_is_the_gated_activation(cpu_ops, dtype):
    gate_up = torch.randn(5, 2 * 40, generator=torch.Generator().manual_seed(1)).to(dtype)
    want = F.silu(gate_up[:, :40]) * gate_up[:, 40:]
    torch.testing.assert_close(cpu_ops.silu_mul(gate_up), want, **_close(dtype))
    # Both tails and zero: far below zero the activation is a few 1e-36 where PyTorch's underflows, never NaN.
    gate_up[0, :9] = torch.tensor([-1e4, -200.0, -90.0, -1e-3, 0.0, 1e-3, 30.0, 90.0, 200.0])
    got = cpu_ops.silu_mul(gate_up)
    assert got.isfinite().all()
    torch.testing.assert_close(got, F.silu(gate_up[:, :40]) * gate_up[:, 40:], atol=1e-30, rtol=_close(dtype)["rtol"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_and_cache_rotates_q_and_k_and_stores_k_and_v_at_their_slots(cpu_ops, dtype):
    heads, kv_heads, head_dim, block_size, num_blocks, rows = 4, 2, 8, 4, 6, 5
    gen = torch.Generator().manual_seed(2)
    # A row of the fused product is wider than q, k and v together when it is a slice of a bigger one.
    wide = torch.randn(rows, (heads + 2 * kv_heads) * head_dim + 8, generator=gen).to(dtype)
    qkv = wide[:, :(heads + 2 * kv_heads) * head_dim]
    angles = torch.rand(rows, head_dim // 2, generator=gen) * 10
    cos, sin = torch.cat([angles, angles], -1).cos().to(dtype), torch.cat([angles, angles], -1).sin().to(dtype)
    k_cache = torch.zeros(num_blocks, kv_heads, block_size, head_dim, dtype=dtype)
    v_cache = torch.zeros_like(k_cache)
    slots = torch.tensor([7, 0, 13, 22, 5])

    q = cpu_ops.rope_and_cache(qkv, cos, sin, k_cache, v_cache, slots, heads, kv_heads, head_dim)

    def rotated(x):  # HF's q * cos + rotate_half(q) * sin, per head
        first, second = x[..., :head_dim // 2], x[..., head_dim // 2:]
        return x * cos[:, None] + torch.cat([-second, first], -1) * sin[:, None]

    q_want = rotated(qkv[:, :heads * head_dim].reshape(rows, heads, head_dim))
    k_want = rotated(qkv[:, heads * head_dim:(heads + kv_heads) * head_dim].reshape(rows, kv_heads, head_dim))
    v_want = qkv[:, (heads + kv_heads) * head_dim:].reshape(rows, kv_heads, head_dim)
    torch.testing.assert_close(q, q_want, **_close(dtype))
    for row, slot in enumerate(slots.tolist()):
        torch.testing.assert_close(k_cache[slot // block_size, :, slot % block_size], k_want[row], **_close(dtype))
        assert torch.equal(v_cache[slot // block_size, :, slot % block_size], v_want[row])
    written = {(s // block_size, s % block_size) for s in slots.tolist()}
    untouched = [(b, o) for b in range(num_blocks) for o in range(block_size) if (b, o) not in written]
    assert all(not k_cache[b, :, o].any() and not v_cache[b, :, o].any() for b, o in untouched)


def _llm(model, tokenizer, **options) -> LLM:
    return LLM(model=model, tokenizer=tokenizer, num_kv_blocks=64, **options)


@pytest.mark.parametrize("tiny_family", FUSED_FAMILIES + UNFUSED_FAMILIES)
def test_only_llama_shaped_families_take_the_fused_path(cpu_ops, tiny_family, tiny_model):
    model, tokenizer = tiny_model
    runner = _llm(model, tokenizer).engine.runner
    assert (runner.model_runner.fused is not None) == (tiny_family in FUSED_FAMILIES)
    assert ("decode layers: fused CPU layers" in runner.describe()) == (tiny_family in FUSED_FAMILIES)


def test_without_prepared_weights_or_when_switched_off_the_modules_run(cpu_ops, tiny_model_factory):
    for options in ({"cpu_prepack_weights": False}, {"cpu_fused_layers": False}, {"cpu_attention_kernel": False}):
        model, tokenizer = tiny_model_factory("llama")
        assert _llm(model, tokenizer, **options).engine.runner.model_runner.fused is None, options


def _generate(model, tokenizer, dtype: torch.dtype, fused: bool, calls: list[int]):
    llm = _llm(model.to(dtype), tokenizer, cpu_fused_layers=fused)
    decoder = llm.engine.runner.model_runner.fused
    if decoder is not None:
        logits = decoder.logits

        def counted(*args):
            calls.append(args[0].shape[0])
            return logits(*args)

        decoder.logits = counted
    rng = random.Random(3)
    prompts = [[rng.randrange(3, len(tokenizer)) for _ in range(n)] for n in (1, 5, 17, 60)]
    params = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True, logprobs=3)
    return [out.outputs[0] for out in llm.generate(prompts, params)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tiny_family", ["llama", "qwen2"])
def test_fused_decodes_give_the_modules_tokens_and_logprobs(cpu_ops, tiny_family, tiny_model_factory, dtype):
    calls: list[int] = []
    fused = _generate(*tiny_model_factory(tiny_family), dtype, True, calls)
    plain = _generate(*tiny_model_factory(tiny_family), dtype, False, [])
    # The fused path ran the prompts' step (83 tokens: the products' many-row tasks and the gated product) and
    # the four requests' decode steps.
    assert calls[0] == 1 + 5 + 17 + 60 and set(calls[1:]) == {4}
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    for got, want in zip(fused, plain):
        if dtype == torch.float32:
            assert got.token_ids == want.token_ids
        for a, b in zip(got.logprobs, want.logprobs):
            if a.token_id != b.token_id:  # bf16: a near-tie may go either way; the rest of that output differs
                assert math.isclose(a.logprob, b.logprob, abs_tol=tolerance)
                break
            assert math.isclose(a.logprob, b.logprob, abs_tol=tolerance)


def test_the_builder_declines_a_model_on_another_device_or_dtype(cpu_ops, tiny_model_factory):
    model, _ = tiny_model_factory("llama")
    model = model.to(torch.float16)
    assert FusedDecoder.build(model, cpu_ops, lambda *a: a[0], None) is None  # type: ignore[arg-type]
