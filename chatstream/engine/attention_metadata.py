"""One engine step's attention inputs, and prompt-chunk attention over the paged KV cache.

Owns `AttentionMetadata` (built once per step by the `ModelRunner`, shared by every layer: where
the step's new keys and values go, the decodes' block tables and context lengths, the prompt
chunks) and `attend_from_blocks`, the SDPA call of a prompt chunk over its context read from the
blocks. Both the fused CPU layers (`fused_decoder.py`) and the attention plugged into
transformers' models (`paged_attention.py`) read them; this module imports nothing from
transformers, so an engine that never runs transformers' modeling code does not load it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from chatstream.engine.kv_cache import KVCache


@dataclass
class PrefillSequence:
    query_start: int
    query_len: int
    num_computed: int  # tokens already in the cache before this chunk
    block_table: torch.Tensor  # [num_blocks_covering_context] long
    mask: torch.Tensor | None  # [query_len, context_len] additive (0 / -inf); None = causal, no context

    @property
    def context_len(self) -> int:
        return self.num_computed + self.query_len


@dataclass
class AttentionMetadata:
    kv_cache: KVCache
    cache_rows: torch.Tensor  # [T * KVH] long: where each new token's heads go (KVCache.rows_for_slots)
    num_decode_tokens: int  # the first tokens of the batch are decodes, one per request
    decode_block_tables: torch.Tensor | None = None  # [D, max_blocks] long, padded with block 0
    decode_mask: torch.Tensor | None = None  # [D, 1, 1, max_blocks * block_size] additive (0 / -inf)
    decode_context_lens: torch.Tensor | None = None  # [D] long
    # The compiled CPU kernel (cpu_attention.py) when available; it replaces gather + SDPA.
    decode_kernel: Callable[..., torch.Tensor] | None = None
    prefills: list[PrefillSequence] = field(default_factory=list)
    num_layer_calls: int = 0  # attention calls that received this metadata (one per layer)


def gather_blocks(blocks: torch.Tensor, block_table: torch.Tensor) -> torch.Tensor:
    """Blocks `[N, H, bs, D]` picked by `block_table` (`[..., nb]`) as `[..., H, nb * bs, D]`."""
    # index_select copies whole blocks with memcpy; advanced indexing (`blocks[table]`) goes
    # through the generic gather kernel and was several times slower on CPU.
    picked = torch.index_select(blocks, 0, block_table.reshape(-1))  # [n, H, bs, D]
    picked = picked.view(*block_table.shape, *blocks.shape[1:])  # [..., nb, H, bs, D]
    picked = picked.transpose(-4, -3)  # [..., H, nb, bs, D]
    return picked.flatten(-3, -2)  # [..., H, nb*bs, D]


def attend_from_blocks(q: torch.Tensor, key_blocks: torch.Tensor, value_blocks: torch.Tensor, p: PrefillSequence,
                       scale: float | None, gqa: bool) -> torch.Tensor:
    """A prompt chunk's queries `[1, H, n, hd]` attend its context `[0, p.context_len)`, read from the blocks
    (its own new keys and values are written there already): `[1, H, n, hd]`. Causal by position; with
    no earlier context (`p.mask` None) the plain causal mask is the whole story."""
    kp = gather_blocks(key_blocks, p.block_table)[:, :p.context_len].unsqueeze(0)  # [1, KVH, ctx, hd]
    vp = gather_blocks(value_blocks, p.block_table)[:, :p.context_len].unsqueeze(0)
    return F.scaled_dot_product_attention(q, kp, vp, attn_mask=p.mask, is_causal=p.mask is None, scale=scale,
                                          enable_gqa=gqa)
