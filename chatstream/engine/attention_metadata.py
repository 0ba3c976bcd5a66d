"""One engine step's attention inputs, and prompt-chunk attention over the paged KV cache.

Owns `AttentionMetadata` (built once per step by the `ModelRunner`, shared by every layer: where
the step's new keys and values go, the decodes' block tables and context lengths, the prompt
chunks, and the compiled kernels that attend them on the CPU) and `attend_from_blocks`, the SDPA
call of a prompt chunk over its context read from the blocks, for where no kernel runs. Both the
fused CPU layers (`fused_decoder.py`) and the attention plugged into transformers' models
(`paged_attention.py`) read them; this module imports nothing from
transformers, so an engine that never runs transformers' modeling code does not load it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from chatstream.engine.kv_cache import KVCache


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where `allowed`, -inf elsewhere: SDPA on CPU is several times faster with an additive float mask than
    with a boolean one, which it converts on every call."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, float("-inf"))


@dataclass
class PrefillSequence:
    query_start: int
    query_len: int
    num_computed: int  # tokens already in the cache before this chunk
    block_table: torch.Tensor  # [num_blocks_covering_context] long
    mask_dtype: torch.dtype = torch.float32  # the dtype SDPA's mask takes (the model's)

    @property
    def context_len(self) -> int:
        return self.num_computed + self.query_len

    @functools.cached_property
    def mask(self) -> torch.Tensor | None:
        """`[query_len, context_len]` additive (0 / -inf), built on first use and shared by every layer; None when
        the chunk has no earlier context (then plain causal attention is the whole story). Only the SDPA path
        asks for it: the compiled kernel masks by position."""
        if not self.num_computed:
            return None
        device = self.block_table.device
        positions = torch.arange(self.num_computed, self.context_len, device=device)
        return additive_mask(torch.arange(self.context_len, device=device)[None, :] <= positions[:, None],
                             self.mask_dtype)


# The compiled prompt-chunk kernel (cpu_prefill_attention.py): (q, out, k_cache, v_cache, tables, starts, lens,
# computed, scale) -> whether it ran (False: no vector path for this shape here; nothing was written).
PrefillKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                          torch.Tensor, torch.Tensor, float], bool]


@dataclass(frozen=True)
class PrefillBatch:
    """A step's prompt chunks as the compiled kernel takes them: one row each."""

    block_tables: torch.Tensor  # [P, max_blocks] long, padded with block 0
    starts: torch.Tensor  # [P] long: the chunk's first row in the step's tokens
    lens: torch.Tensor  # [P] long
    computed: torch.Tensor  # [P] long: tokens of its request already in the cache

    @classmethod
    def of(cls, prefills: list[PrefillSequence]) -> PrefillBatch:
        width = max(len(p.block_table) for p in prefills)
        device = prefills[0].block_table.device
        tables = torch.zeros(len(prefills), width, dtype=torch.long, device=device)
        for row, p in enumerate(prefills):
            tables[row, :len(p.block_table)] = p.block_table
        return cls(tables, torch.tensor([p.query_start for p in prefills], device=device),
                   torch.tensor([p.query_len for p in prefills], device=device),
                   torch.tensor([p.num_computed for p in prefills], device=device))


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
    # The compiled CPU prompt-chunk kernel when available, and the chunks as it takes them; it replaces
    # gather + mask + SDPA.
    prefill_kernel: PrefillKernel | None = None
    prefill_batch: PrefillBatch | None = None
    num_layer_calls: int = 0  # attention calls that received this metadata (one per layer)

    def attend_prefills(self, q: torch.Tensor, out: torch.Tensor, key_blocks: torch.Tensor,
                        value_blocks: torch.Tensor, scale: float) -> bool:
        """The prompt chunks' rows of `out` `[T, H, hd]` (contiguous) from `q` (same shape, any strides) through
        the compiled kernel; False when it is not available or has no vector path for this shape (then nothing is
        written)."""
        if self.prefill_kernel is None or not self.prefills or q.dtype != key_blocks.dtype:
            return False
        if self.prefill_batch is None:
            self.prefill_batch = PrefillBatch.of(self.prefills)
        b = self.prefill_batch
        return self.prefill_kernel(q.contiguous(), out, key_blocks, value_blocks, b.block_tables, b.starts, b.lens,
                                   b.computed, scale)


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
