"""The KV cache tensors and the formula that sizes them.

Layout per layer: keys and values each `[num_blocks, num_kv_heads, block_size, head_dim]`. A
token's slot is `block_id * block_size + offset`; heads come before positions inside a block so
that one KV head's keys of a block are one contiguous run of memory, which is what the decode
kernel streams through.

Sizing: one token costs `2 (K and V) * num_layers * num_kv_heads * head_dim * dtype_bytes`; one
block costs that times `block_size`, and `num_blocks = budget_bytes // bytes_per_block`. The default
budget is 70 % of what is free once the weights are in place: the available RAM on CPU (as the
kernel reports it: free plus reclaimable caches), the free device memory on CUDA. The engine then
caps the blocks at what `max_num_seqs` sequences of full length could fill, and logs the result.
On CPU the tensors live in one anonymous memory map: its pages are zero (never NaN, which masked
attention would turn into NaN outputs) and are only backed by memory once written, so the resident
size grows with the blocks actually used rather than with the budget.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

import psutil
import torch

GIB = 1024**3


@dataclass(frozen=True)
class KVCacheSpec:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    dtype: torch.dtype

    @classmethod
    def from_config(cls, config: Any, dtype: torch.dtype) -> "KVCacheSpec":
        config = config.get_text_config() if hasattr(config, "get_text_config") else config
        num_heads = config.num_attention_heads
        num_kv_heads = getattr(config, "num_key_value_heads", None) or num_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // num_heads
        return cls(config.num_hidden_layers, num_kv_heads, head_dim, dtype)

    @property
    def bytes_per_token(self) -> int:
        elem = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * elem


FREE_MEMORY_SHARE = 0.7


def default_kv_budget(device: torch.device) -> tuple[int, str]:
    """(budget bytes, how it was chosen, for the start-up log)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        where = f"the {free / GIB:.1f} GiB free on {device}"
    else:
        free = psutil.virtual_memory().available
        where = f"the {free / GIB:.1f} GiB of RAM available"
    return int(free * FREE_MEMORY_SHARE), f"{FREE_MEMORY_SHARE:.0%} of {where}"


class KVCache:
    """Per-layer key and value block tensors."""

    def __init__(self, spec: KVCacheSpec, num_blocks: int, block_size: int, device: torch.device) -> None:
        self.spec = spec
        self.num_blocks = num_blocks
        self.block_size = block_size
        shape = (2, spec.num_layers, num_blocks, spec.num_kv_heads, block_size, spec.head_dim)
        if device.type == "cpu":
            numel = 1
            for n in shape:
                numel *= n
            elem = torch.empty((), dtype=spec.dtype).element_size()
            self._buffer = mmap.mmap(-1, max(numel * elem, 1))
            data = torch.frombuffer(self._buffer, dtype=spec.dtype, count=numel).view(shape)
        else:
            data = torch.zeros(shape, dtype=spec.dtype, device=device)
        self.key_blocks = list(data[0].unbind(0))
        self.value_blocks = list(data[1].unbind(0))

    @staticmethod
    def num_blocks_for(spec: KVCacheSpec, block_size: int, budget_bytes: int) -> int:
        return budget_bytes // (spec.bytes_per_token * block_size)

    @property
    def size_bytes(self) -> int:
        return self.num_blocks * self.block_size * self.spec.bytes_per_token

    def rows_for_slots(self, slot_mapping: torch.Tensor) -> torch.Tensor:
        """Row indices, in a `[num_blocks * heads * block_size, head_dim]` view of one layer's cache,
        of each (token, head) pair of the tokens at `slot_mapping`, token-major. Computed once per
        step and shared by all layers' writes."""
        blocks = torch.div(slot_mapping, self.block_size, rounding_mode="floor")
        offsets = slot_mapping - blocks * self.block_size
        heads = torch.arange(self.spec.num_kv_heads, device=slot_mapping.device)
        rows = (blocks[:, None] * self.spec.num_kv_heads + heads[None, :]) * self.block_size + offsets[:, None]
        return rows.reshape(-1)

    def write(self, layer: int, rows: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        """Store new tokens' `key`/`value` ([T, num_kv_heads, head_dim]) at `rows` (see `rows_for_slots`)."""
        head_dim = self.spec.head_dim
        self.key_blocks[layer].view(-1, head_dim).index_copy_(0, rows, key.reshape(-1, head_dim))
        self.value_blocks[layer].view(-1, head_dim).index_copy_(0, rows, value.reshape(-1, head_dim))
