"""Prepacked and quantized linear weights: same products, no second copy, weights still readable and savable."""

from __future__ import annotations

import mmap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from chatstream.engine.cpu_weights import PackedWeight, prepack_linear_weights, prepacking_works
from chatstream.engine.linear_fusion import FusedMember
from chatstream.engine.mapped_memory import release_file_pages
from chatstream.engine.model_weights import CpuMatmulSupport, cpu_matmul_support, describe_matmuls, prepare_weights
from chatstream.engine.quantization import int8_product_cpu, int8_product_dequantized, quantize_per_channel
from chatstream.engine.weight_swap import is_swapped, kernel_of

needs_packing = pytest.mark.skipif(not prepacking_works(), reason="oneDNN prepacking is not available here")


def _inputs(model: torch.nn.Module) -> torch.Tensor:
    return torch.randint(3, model.config.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))


@needs_packing
@pytest.mark.parametrize("tiny_family", ["llama", "qwen2", "gpt2"])
def test_prepacked_model_matches_dense_and_drops_dense_weights(tiny_model) -> None:
    model, _ = tiny_model
    ids = _inputs(model)
    with torch.no_grad():
        want = model(ids).logits
        dense = {k: v.clone() for k, v in model.state_dict().items()}
    count = prepack_linear_weights(model)

    linears = [m for m in model.modules() if is_swapped(m)]
    assert count == len(linears) > 0
    for module in linears:
        assert "weight" not in module._parameters  # the dense copy is gone, not kept beside the packed one
    with torch.no_grad():
        got = model(ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # Weights are rebuilt exactly from the packed form, and state_dict still has every entry.
    saved = model.state_dict()
    assert set(saved) == set(dense)
    for key, value in dense.items():
        torch.testing.assert_close(saved[key], value, atol=0, rtol=0, msg=key)


@needs_packing
@pytest.mark.parametrize("tiny_family", ["llama"])
def test_fused_siblings_and_tied_head(tiny_model) -> None:
    model, _ = tiny_model
    model.config.tie_word_embeddings = True
    model.lm_head.weight = model.model.embed_tokens.weight  # tie them, as SmolLM2's checkpoint does
    prepack_linear_weights(model)
    attn, mlp = model.model.layers[0].self_attn, model.model.layers[0].mlp
    for module in (attn.q_proj, attn.k_proj, attn.v_proj, mlp.gate_proj, mlp.up_proj):
        assert isinstance(kernel_of(module), FusedMember)
    assert kernel_of(attn.q_proj).group is kernel_of(attn.v_proj).group
    assert isinstance(kernel_of(attn.o_proj), PackedWeight)
    # The tied head keeps the embedding's tensor (the embedding still reads it); it is not duplicated.
    assert model.lm_head.weight is model.model.embed_tokens.weight

    x = torch.randn(3, model.config.hidden_size)
    with torch.no_grad():
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
        assert torch.equal(attn.k_proj(x), k)  # asked twice: recomputed, same result
        for module, out in ((attn.q_proj, q), (attn.k_proj, k), (attn.v_proj, v)):
            torch.testing.assert_close(out, F.linear(x, module.weight), atol=1e-5, rtol=1e-5)


@needs_packing
@pytest.mark.parametrize("tiny_family", ["llama"])
def test_training_mode_and_gradients_use_the_dense_weight(tiny_model) -> None:
    model, _ = tiny_model
    prepack_linear_weights(model)
    proj = model.model.layers[0].self_attn.o_proj
    x = torch.randn(2, model.config.hidden_size, requires_grad=True)
    out = proj(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, proj.weight.sum(0).expand(2, -1), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not prepacking_works(torch.bfloat16), reason="no bf16 prepacking here")
def test_bf16_packed_product() -> None:
    weight = torch.randn(40, 24).bfloat16()
    x = torch.randn(5, 24).bfloat16()
    kernel = PackedWeight(weight)
    torch.testing.assert_close(kernel(x).float(), F.linear(x.float(), weight.float()), atol=0.1, rtol=0.02)
    assert torch.equal(kernel.dense_weight(), weight)


def test_release_file_pages_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    weight = torch.randn(512, 1024)  # 2 MiB: many whole pages
    save_file({"w": weight}, str(path))
    loaded = load_file(str(path))["w"]  # safetensors maps the file
    released = release_file_pages(loaded)
    assert released >= 2 * 1024 * 1024 - 2 * mmap.PAGESIZE - 4096
    assert torch.equal(loaded, weight)  # re-read from the file on access
    assert release_file_pages(weight.clone()) == 0  # anonymous memory is never touched


def test_int8_quantization_error_and_kernels() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 96, generator=gen)
    q, scale = quantize_per_channel(weight)
    assert q.dtype == torch.int8 and scale.shape == (64,)
    # Round-to-nearest: every element within half a step of its channel's scale.
    assert ((q.float() * scale[:, None] - weight).abs() <= scale[:, None] / 2 + 1e-6).all()
    x = torch.randn(3, 96, generator=gen)
    want = F.linear(x, q.float() * scale[:, None])
    torch.testing.assert_close(int8_product_dequantized(x, q, scale), want, atol=1e-4, rtol=1e-4)
    cpu = int8_product_cpu(x, q, scale.bfloat16())
    assert cpu.dtype == torch.float32
    torch.testing.assert_close(cpu, want, atol=0.15, rtol=0.02)  # bf16 activations and scales


@pytest.mark.parametrize("tiny_family", ["llama", "gpt2"])
def test_int8_model_close_to_dense(tiny_model) -> None:
    model, _ = tiny_model
    ids = _inputs(model)
    with torch.no_grad():
        want = model(ids).logits
    line = prepare_weights(model, "int8", prepack=True)
    assert "int8" in line
    assert all(m.__dict__.get("_chatstream_kernel") is not None for m in model.modules() if is_swapped(m))
    with torch.no_grad():
        got = model(ids).logits
    # Same predictions on almost every position; logits within a few percent of their spread.
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
    assert (got - want).abs().max() <= 0.1 * want.abs().max()


@pytest.mark.parametrize("bf16_cpu", [True, False], ids=["bf16-cpu", "no-bf16-cpu"])
def test_int8_products_of_many_rows_widen_to_bf16_only_where_the_cpu_has_it(tiny_model_factory,
                                                                            bf16_cpu: bool) -> None:
    model, _ = tiny_model_factory("llama")
    support = CpuMatmulSupport(amx_bf16=False, avx512_bf16=bf16_cpu, avx512=True)
    prepare_weights(model, "int8", prepack=True, support=support)
    wide = torch.bfloat16 if bf16_cpu else torch.float32
    kernels = [kernel_of(m) for m in model.modules() if is_swapped(m) and not isinstance(m, torch.nn.Embedding)]
    kernels = [k.group.kernel if isinstance(k, FusedMember) else k for k in kernels]
    assert kernels and all(k.wide == wide for k in kernels)
    kernel = kernels[0]
    x = torch.randn(24, kernel.qweight.shape[1], generator=torch.Generator().manual_seed(2))  # past the few-row kernel
    exact = F.linear(x, kernel.qweight.float() * kernel.scales[:, None])
    got = kernel(x)
    assert got.dtype == torch.float32
    if bf16_cpu:  # activations and weights rounded to bf16 for the product
        torch.testing.assert_close(got, exact, atol=0.05, rtol=0.02)
    else:  # fp32 throughout: the dequantized weight's product up to fp32 rounding
        torch.testing.assert_close(got, exact, atol=1e-4, rtol=1e-4)
    line = describe_matmuls(torch.device("cpu"), torch.float32, "int8", 0, int8_kernel=True, support=support)
    assert line.endswith(f"oneDNN on {'bf16' if bf16_cpu else 'fp32'}-widened weights above")


def test_describe_matmuls_names_the_path() -> None:
    cpu = torch.device("cpu")
    assert describe_matmuls(cpu, torch.float32, None, 10).startswith("fp32 matmuls: oneDNN prepacked")
    line = describe_matmuls(cpu, torch.bfloat16, None, 10)
    assert line.startswith("bf16 matmuls: oneDNN prepacked, ")  # without the tile kernel (no ops given)
    assert cpu_matmul_support().bf16_isa in line
    assert "not prepacked" in describe_matmuls(cpu, torch.float32, None, 0)
    assert "int8" in describe_matmuls(torch.device("cuda"), torch.bfloat16, "int8", 0)
    with pytest.raises(ValueError, match="quantization"):
        prepare_weights(torch.nn.Linear(2, 2), "int4", prepack=False)


def test_row_buckets_bound_the_shapes_and_padding_is_invisible() -> None:
    from chatstream.engine.cpu_weights import padded_rows, row_bucket

    buckets = {row_bucket(m) for m in range(1, 513)}
    assert len(buckets) <= 18 and all(row_bucket(m) >= m for m in range(1, 2000))
    assert [row_bucket(m) for m in (1, 2, 4, 5, 32, 33, 64, 65, 500, 513)] == [1, 2, 4, 8, 32, 40, 64, 96, 512, 768]
    assert all(row_bucket(m) - m < 8 for m in range(1, 65))
    rows = torch.randn(5, 7)
    padded = padded_rows(rows)
    assert padded.shape == (8, 7) and torch.equal(padded[:5], rows) and not padded[5:].any()
    if prepacking_works():
        weight = torch.randn(11, 7)
        torch.testing.assert_close(PackedWeight(weight)(rows), F.linear(rows, weight), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tiny_family", ["llama"])
def test_engine_logs_its_matmul_path_and_kv_budget(tiny_model, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from chatstream import LLM
    from chatstream.engine.config import EngineConfig
    from chatstream.engine.kv_cache import FREE_MEMORY_SHARE, default_kv_budget

    with pytest.raises(ValueError, match="quantization"):
        EngineConfig(quantization="int4")
    budget, why = default_kv_budget(torch.device("cpu"))
    assert budget > 0 and f"{FREE_MEMORY_SHARE:.0%} of the" in why and "available" in why
    model, tokenizer = tiny_model
    with caplog.at_level(logging.INFO, logger="chatstream.engine"):
        LLM(model, tokenizer, max_model_len=64)
    text = caplog.text
    assert "fp32 matmuls:" in text and "decode attention:" in text and "prompt attention:" in text
    assert "budget from 70% of the" in text
