"""The compiled CPU decode kernel against SDPA over the same gathered blocks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from chatstream.engine.cpu_attention import load_decode_kernel


@pytest.mark.parametrize(("num_heads", "num_kv_heads", "head_dim", "block_size"), [(9, 3, 64, 16), (4, 4, 16, 4), (8, 2, 32, 8)])
def test_kernel_matches_sdpa(num_heads: int, num_kv_heads: int, head_dim: int, block_size: int) -> None:
    kernel = load_decode_kernel()
    if kernel is None:
        pytest.skip("no C++ compiler here: the engine uses SDPA")
    gen = torch.Generator().manual_seed(0)
    num_blocks, num_seqs, max_blocks = 64, 5, 7
    k_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen)
    v_cache = torch.randn(num_blocks, num_kv_heads, block_size, head_dim, generator=gen)
    tables = torch.stack([torch.randperm(num_blocks, generator=gen)[:max_blocks] for _ in range(num_seqs)])
    lens = torch.tensor([1, block_size, block_size + 1, 3 * block_size - 1, max_blocks * block_size])
    q = torch.randn(num_seqs, num_heads, head_dim, generator=gen)

    got = kernel(q, k_cache, v_cache, tables, lens, head_dim**-0.5)

    for d in range(num_seqs):
        k = k_cache[tables[d]].transpose(0, 1).flatten(1, 2)[:, : lens[d]]  # [KVH, L, hd]
        v = v_cache[tables[d]].transpose(0, 1).flatten(1, 2)[:, : lens[d]]
        want = F.scaled_dot_product_attention(q[d][:, None], k, v, enable_gqa=True)[:, 0]
        torch.testing.assert_close(got[d], want, atol=1e-5, rtol=1e-4)
