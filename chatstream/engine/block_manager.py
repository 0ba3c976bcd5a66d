"""Fixed-size KV blocks: allocation, reference counts and the automatic prefix cache.

Contract:
- `allocate_slots(request, num_new_tokens, computed_block_ids)` asks before it commits: it returns
  False (and changes nothing) when the free blocks cannot cover the request's tokens after this
  step; "no room" is a return value, never an exception.
- Prefix cache: a full block is keyed by a chained hash of its parent's hash and its own token
  ids, so equal hashes mean equal prefixes. Only full blocks are shared (reference counted).
  A freed block keeps its hash and stays reusable until it is evicted, least recently freed
  first: the free queue doubles as the LRU list.
- The free count includes cached-but-unused blocks: they are evicted on demand.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from chatstream.engine.request import Request


@dataclass
class KVBlock:
    block_id: int
    ref_count: int = 0
    block_hash: int | None = None
    # Kept to rule out hash collisions: a hit must match the tokens exactly.
    token_ids: tuple[int, ...] | None = None


@dataclass
class PrefixCacheStats:
    """Counters in tokens, as vLLM reports them: queried prompt tokens and those found cached."""

    queries: int = 0
    hits: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0


def chain_hash(parent_hash: int | None, token_ids: tuple[int, ...]) -> int:
    # Python's tuple hash of ints is deterministic across processes (no hash randomisation for
    # ints), which keeps hashes stable for tests and recordings.
    return hash((parent_hash, token_ids))


class BlockManager:
    """Owns every KV block id; the KV tensors themselves live in `KVCache`."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        # Blocks with ref_count 0, oldest-freed first. Allocation pops from the front.
        self._free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[int, int] = {}  # block hash -> block id
        self.stats = PrefixCacheStats()

    # -- queries -----------------------------------------------------------------------------
    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    @property
    def usage(self) -> float:
        return self.num_used_blocks / self.num_blocks

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # -- prefix cache ------------------------------------------------------------------------
    def _extend_hashes(self, request: Request, num_tokens: int) -> None:
        """Make sure `request.block_hashes` covers every full block of its first `num_tokens`."""
        bs = self.block_size
        hashes = request.block_hashes
        tokens = request.all_token_ids
        while (len(hashes) + 1) * bs <= num_tokens:
            i = len(hashes)
            parent = hashes[-1] if hashes else None
            hashes.append(chain_hash(parent, tuple(tokens[i * bs:(i + 1) * bs])))

    def get_computed_blocks(self, request: Request) -> list[int]:
        """The longest run of cached full blocks matching the request's leading tokens.

        At least the last token is always left to compute, because its logits are needed.
        """
        if not self.enable_prefix_caching:
            return []
        limit = request.num_tokens - 1
        self._extend_hashes(request, limit)
        bs = self.block_size
        hits: list[int] = []
        for i, h in enumerate(request.block_hashes):
            if (i + 1) * bs > limit:
                break
            block_id = self._cached.get(h)
            if block_id is None:
                break
            block = self.blocks[block_id]
            if block.token_ids != tuple(request.all_token_ids[i * bs:(i + 1) * bs]):
                break
            hits.append(block_id)
        return hits

    def record_query(self, num_query_tokens: int, num_hit_tokens: int) -> None:
        self.stats.queries += num_query_tokens
        self.stats.hits += num_hit_tokens

    def cache_full_blocks(self, request: Request) -> None:
        """Register the request's computed full blocks in the prefix cache."""
        if not self.enable_prefix_caching:
            return
        num_full = request.num_computed_tokens // self.block_size
        self._extend_hashes(request, num_full * self.block_size)
        bs = self.block_size
        for i in range(num_full):
            block = self.blocks[request.block_ids[i]]
            if block.block_hash is not None:
                continue
            h = request.block_hashes[i]
            if h in self._cached:
                # Same content already cached in another block (two requests computed the same
                # prefix in one step); keep the first and let this one be freed normally.
                continue
            block.block_hash = h
            block.token_ids = tuple(request.all_token_ids[i * bs:(i + 1) * bs])
            self._cached[h] = block.block_id

    # -- allocation --------------------------------------------------------------------------
    def allocate_slots(self, request: Request, num_new_tokens: int, computed_block_ids: list[int] = ()) -> bool:
        """Give `request` blocks for its computed tokens plus `num_new_tokens`; False if no room."""
        num_after = request.num_computed_tokens + len(computed_block_ids) * self.block_size + num_new_tokens
        num_required = self.blocks_needed(num_after)
        num_have = len(request.block_ids) + len(computed_block_ids)
        num_new_blocks = max(0, num_required - num_have)
        # Computed blocks that sit in the free queue stop being free once we take them.
        num_touched_free = sum(1 for b in computed_block_ids if self.blocks[b].ref_count == 0)
        if num_new_blocks + num_touched_free > len(self._free):
            return False
        for b in computed_block_ids:
            block = self.blocks[b]
            if block.ref_count == 0:
                del self._free[b]
            block.ref_count += 1
            request.block_ids.append(b)
        for _ in range(num_new_blocks):
            request.block_ids.append(self._take_free_block())
        return True

    def _take_free_block(self) -> int:
        block_id, _ = self._free.popitem(last=False)
        block = self.blocks[block_id]
        if block.block_hash is not None:
            # Evict: the least recently freed cached block gives up its content.
            if self._cached.get(block.block_hash) == block_id:
                del self._cached[block.block_hash]
            block.block_hash = None
            block.token_ids = None
        block.ref_count = 1
        return block_id

    def free(self, request: Request) -> None:
        """Release all of the request's blocks (finish, abort or preemption)."""
        # Tail blocks first, so that a prefix's later blocks are evicted before its earlier ones.
        for block_id in reversed(request.block_ids):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.block_hash is None:
                    # Nothing worth keeping: put it at the front so it is reused first.
                    self._free[block_id] = None
                    self._free.move_to_end(block_id, last=False)
                else:
                    self._free[block_id] = None
        request.block_ids = []

    def reset_prefix_cache(self) -> None:
        for block in self.blocks:
            if block.ref_count == 0:
                block.block_hash = None
                block.token_ids = None
        self._cached = {h: b for h, b in self._cached.items() if self.blocks[b].ref_count > 0}
