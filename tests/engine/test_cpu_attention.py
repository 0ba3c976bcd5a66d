"""The compiled CPU decode kernel against SDPA over the same gathered blocks: the vector path (head sizes
64 and 128, one to eight query heads per KV head, where the CPU has AVX-512) and the generic loop (any
other shape), over block sizes that do and do not divide 16, in fp32 and bf16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chatstream.engine.cpu_attention import load_decode_kernel

SHAPES = [  # (num_heads, num_kv_heads, head_dim, block_size)
    (9, 3, 64, 16), (4, 4, 16, 4), (8, 2, 32, 8),  # generic loop for 16 and 32
    (3, 3, 64, 16), (2, 1, 64, 8), (12, 3, 64, 32), (10, 2, 64, 5), (14, 2, 64, 16), (16, 2, 64, 16),
    (4, 4, 128, 16), (24, 3, 128, 16), (12, 2, 128, 7),
    (18, 2, 64, 16), (6, 1, 96, 16),  # nine query heads per KV head, head size 96: the generic loop
]


def _kernel():
    kernel = load_decode_kernel()
    if kernel is None:
        pytest.skip("no C++ compiler here: the engine uses SDPA")
    return kernel


def _check(num_heads: int, num_kv_heads: int, head_dim: int, block_size: int, dtype: torch.dtype,
           lens: list[int], max_blocks: int, num_blocks: int = 96) -> None:
    gen = torch.Generator().manual_seed(head_dim * 100 + num_heads * 10 + block_size)
    num_seqs = len(lens)
    k_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen).to(dtype)
    v_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen).to(dtype)
    tables = torch.stack([torch.randperm(num_blocks, generator=gen)[:max_blocks] for _ in range(num_seqs)])
    q = torch.randn(num_seqs, num_heads, head_dim, generator=gen).to(dtype)

    got = _kernel()(q, k_cache, v_cache, tables, torch.tensor(lens), head_dim**-0.5)

    assert got.dtype == dtype and got.shape == q.shape
    for d in range(num_seqs):
        k = k_cache[tables[d]].transpose(0, 1).flatten(1, 2)[:, : lens[d]].float()  # [KVH, L, hd]
        v = v_cache[tables[d]].transpose(0, 1).flatten(1, 2)[:, : lens[d]].float()
        want = F.scaled_dot_product_attention(q[d][:, None].float(), k, v, enable_gqa=True)[:, 0]
        if dtype == torch.float32:
            torch.testing.assert_close(got[d], want, atol=1e-5, rtol=1e-4)
        else:  # the inputs are the same bf16 values; only the output's rounding to bf16 differs
            torch.testing.assert_close(got[d].float(), want, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize(("num_heads", "num_kv_heads", "head_dim", "block_size"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_kernel_matches_sdpa(num_heads: int, num_kv_heads: int, head_dim: int, block_size: int,
                             dtype: torch.dtype) -> None:
    max_blocks = 7
    lens = [1, block_size, block_size + 1, 15, 16, 17, 3 * block_size - 1, max_blocks * block_size]
    _check(num_heads, num_kv_heads, head_dim, block_size, dtype, [min(n, max_blocks * block_size) for n in lens],
           max_blocks)


def test_long_contexts_over_many_blocks() -> None:
    """Hundreds of keys, past any prefetch distance, with lengths on and off the 16-key groups."""
    _check(9, 3, 64, 16, torch.float32, [640, 333, 1], max_blocks=40, num_blocks=128)
    _check(8, 2, 128, 16, torch.float32, [511, 257], max_blocks=32, num_blocks=80)
