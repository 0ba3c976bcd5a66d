"""Runs one engine step on the model: flat inputs, slot mapping, paged attention.

The step runs through our fused CPU layers where the model allows them (`fused_decoder.py`),
else through the transformers model's own forward pass with our attention plugged in
(`paged_attention.py`). The scheduler's output becomes one packed batch `[1, T]`: decodes first (one token each), then
prompt chunks. Position ids are the tokens' absolute positions, so rotary or learned position
embeddings are right for every request in the pack. Only the rows whose request reaches its last
token in this step go through the LM head (HF: `logits_to_keep` as an index tensor), which spares the
vocabulary projection for every other prompt token; a request that asked for prompt log-probs also
gets the rows of the prompt tokens it still lacks them for (`PromptLogits`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from chatstream.engine.attention_metadata import AttentionMetadata, PrefillKernel, PrefillSequence, additive_mask
from chatstream.engine.cpu_attention import load_decode_kernel, load_cpu_ops
from chatstream.engine.fused_decoder import FusedDecoder
from chatstream.engine.kv_cache import KVCache
from chatstream.engine.request import Request
from chatstream.engine.scheduler import ScheduledRequest, SchedulerOutput
from chatstream.engine.step_runner import PromptLogits, StepLogits

if TYPE_CHECKING:
    from transformers import PreTrainedModel


CPU_KERNEL_DTYPES = (torch.float32, torch.bfloat16)


def _slots(block_ids: list[int], block_size: int, start: int, end: int) -> list[int]:
    return [block_ids[p // block_size] * block_size + p % block_size for p in range(start, end)]


class ModelRunner:
    """Owns the model and the KV cache tensors; turns a `SchedulerOutput` into logits."""

    def __init__(self, model: PreTrainedModel | nn.Module, kv_cache: KVCache, use_cpu_kernel: bool = True,
                 fuse_layers: bool = True) -> None:
        self.model = model
        self.kv_cache = kv_cache
        self.block_size = kv_cache.block_size
        self.device = model.device
        self.dtype = model.dtype
        self.decode_kernel = None
        if use_cpu_kernel and self.device.type == "cpu" and self.dtype in CPU_KERNEL_DTYPES:
            self.decode_kernel = load_decode_kernel()
        # For the start-up log: which code runs decode attention.
        self.decode_path = "compiled CPU paged kernel" if self.decode_kernel is not None else "SDPA over gathered blocks"
        # The prompt chunks' kernel comes in the same build where it has AVX-512 (it leaves head sizes it has no
        # path for to SDPA).
        ops = load_cpu_ops() if self.decode_kernel is not None else None
        self.prefill_kernel: PrefillKernel | None = None
        if ops is not None and ops.prefill_kernel_available():
            self.prefill_kernel = ops.paged_prefill_attention
        self.prefill_path = ("compiled CPU chunk kernel" if self.prefill_kernel is not None
                             else "SDPA over gathered blocks")
        self.fused: FusedDecoder | None = None
        if fuse_layers and ops is not None:
            self.fused = FusedDecoder.build(model, ops, self.decode_kernel, kv_cache)
        self.layers_path = "fused CPU layers" if self.fused is not None else "the model's modules"
        # transformers' models also get our attention in their own forward pass (the steps the fused layers do
        # not run); a model of ours (`native_model.py`) has no forward pass: the fused layers run all of its steps.
        self.metadata_kwarg: str | None = None
        if hasattr(model, "set_attn_implementation"):
            from chatstream.engine import paged_attention  # registers the attention with transformers

            model.set_attn_implementation(paged_attention.ATTN_IMPLEMENTATION)
            self.metadata_kwarg = paged_attention.METADATA_KWARG
        elif self.fused is None:
            raise ValueError(f"{type(model).__name__} runs only through the fused CPU layers, which are not available "
                             "here (the compiled CPU kernel, fp32 or bf16 on the CPU)")

    def _decode_tables(self, decodes: list[ScheduledRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """Block tables `[D, max_blocks]` (padded with block 0) and context lengths `[D]` of the decodes."""
        bs = self.block_size
        num_blocks = max(-(-(s.request.num_computed_tokens + 1) // bs) for s in decodes)
        tables = [s.request.block_ids[:num_blocks] for s in decodes]
        tables = [t + [0] * (num_blocks - len(t)) for t in tables]
        context_lens = torch.tensor([s.request.num_computed_tokens + 1 for s in decodes], device=self.device)
        return torch.tensor(tables, dtype=torch.long, device=self.device), context_lens

    def execute(self, output: SchedulerOutput) -> StepLogits:
        """Run the step; return float32 logits `[N, V]`, the N requests they belong to, and prompt logits."""
        decodes = [s for s in output.scheduled if s.num_new_tokens == 1]
        prefills = [s for s in output.scheduled if s.num_new_tokens > 1]
        ordered: list[ScheduledRequest] = decodes + prefills
        bs = self.block_size

        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        logits_rows: list[int] = []
        sampled: list[Request] = []
        prompt_rows: list[tuple[Request, int, int, int]] = []  # request, first position, first row, count
        for s in ordered:
            r = s.request
            start, end = r.num_computed_tokens, r.num_computed_tokens + s.num_new_tokens
            if r.needs_prompt_logits:
                # Position p's logits give prompt token p + 1's log-prob; the last prompt position's
                # are the sampled row.
                first, last = max(start, len(r.prompt_logprobs)), min(end, r.num_prompt_tokens - 1)
                if first < last:
                    prompt_rows.append((r, first, len(input_ids) + first - start, last - first))
            input_ids.extend(r.all_token_ids[start:end])
            positions.extend(range(start, end))
            slots.extend(_slots(r.block_ids, bs, start, end))
            if end == r.num_tokens:
                logits_rows.append(len(input_ids) - 1)
                sampled.append(r)

        dev = self.device
        slot_ids = torch.tensor(slots, dtype=torch.long, device=dev)
        meta = AttentionMetadata(
            kv_cache=self.kv_cache,
            cache_rows=self.kv_cache.rows_for_slots(slot_ids),
            num_decode_tokens=len(decodes),
        )
        if decodes:
            meta.decode_block_tables, context_lens = self._decode_tables(decodes)
            meta.decode_context_lens = context_lens
            if self.decode_kernel is not None:
                meta.decode_kernel = self.decode_kernel
            else:
                key_pos = torch.arange(meta.decode_block_tables.shape[1] * bs, device=dev)
                allowed = key_pos[None, :] < context_lens[:, None]
                meta.decode_mask = additive_mask(allowed, self.dtype)[:, None, None, :]
        query_start = len(decodes)
        for s in prefills:
            r = s.request
            n, done = s.num_new_tokens, r.num_computed_tokens
            table = torch.tensor(r.block_ids[:-(-(done + n) // bs)], dtype=torch.long, device=dev)
            meta.prefills.append(PrefillSequence(query_start, n, done, table, self.dtype))
            query_start += n
        if prefills:
            meta.prefill_kernel = self.prefill_kernel

        ids = torch.tensor([input_ids], dtype=torch.long, device=dev)
        pos = torch.tensor([positions], dtype=torch.long, device=dev)
        num_sampled = len(logits_rows)
        for _, _, row, count in prompt_rows:
            logits_rows.extend(range(row, row + count))
        rows = torch.tensor(logits_rows, dtype=torch.long, device=dev)
        with torch.inference_mode():
            if self.fused is not None:
                logits = self.fused.logits(ids[0], pos[0], slot_ids, meta, rows).float()
            else:
                logits = self._forward(ids, pos, rows, meta)
        prompt_logits, offset = [], num_sampled
        for r, first, _, count in prompt_rows:
            prompt_logits.append(PromptLogits(r, first, logits[offset:offset + count]))
            offset += count
        return StepLogits(logits[:num_sampled], sampled, prompt_logits)

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, rows: torch.Tensor,
                 meta: AttentionMetadata) -> torch.Tensor:
        """float32 logits of `rows` from the transformers model's own forward pass, our attention inside."""
        assert self.metadata_kwarg is not None  # __init__: a model without the fused layers is a transformers one
        # The step's metadata goes down explicitly with the call (no state shared between
        # engines or threads); HF hands it to the attention of every layer.
        out = self.model(input_ids=ids, position_ids=pos, logits_to_keep=rows, use_cache=False,
                         **{self.metadata_kwarg: meta})
        if meta.num_layer_calls != self.kv_cache.spec.num_layers:
            raise RuntimeError(
                f"{type(self.model).__name__} passed the paged-attention metadata to {meta.num_layer_calls} of "
                f"{self.kv_cache.spec.num_layers} attention layers: this model does not hand its keyword "
                "arguments down to attention, which the engine needs")
        return out.logits[0].float()
