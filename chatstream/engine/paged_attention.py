"""Paged attention for HuggingFace models, plugged in through transformers' attention registry.

We register the function `chatstream_paged` with `transformers.AttentionInterface` and switch the
model to it. HF then computes Q/K/V projections, rotary embeddings and the output projection as
usual, and calls us for the attention itself with a flat batch `[1, T]` in which the tokens of all
scheduled requests are packed. We write the new K/V into their blocks (through the slot mapping)
and attend each token to its own request's context, read through the request's block table.

Why the registry rather than model code of our own: every architecture transformers implements
with the interface works unchanged (Llama, Mistral, Qwen2/3, GPT-NeoX, GPT-2, ...), and the model's
numerics stay HF's, which is what the parity tests compare against.

The per-step metadata (slot mapping, block tables, masks) is built once per step by the
`ModelRunner` and shared by all layers; it travels explicitly, as the keyword argument
`METADATA_KWARG` of the model call, which HF hands down to every attention call. There is no
module state: any number of engines, each stepped by its own thread, share this function, and a
forward pass without the argument (the user's own `model.generate`, in any thread, at any time)
is plain SDPA attention. Each call counts itself in the metadata, so the runner can check that
the model really passed the argument down to every layer.

Decodes (one new token per request) run, on CPU in fp32 or bf16, through our compiled kernel that
reads K/V straight from the blocks (`cpu_attention.py`); elsewhere they are batched into one SDPA
call over a padded gather of their blocks. Prompts (or prompt chunks) run, on the same CPUs, through
the compiled prompt-chunk kernel (`cpu_prefill_attention.py`), all of a step's chunks in one call;
elsewhere one SDPA call each, causal, with an offset when part of the prompt is already in the
cache (chunked prefill, prefix-cache hits, resumed requests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from chatstream.engine.attention_metadata import AttentionMetadata, gather_blocks, attend_from_blocks

ATTN_IMPLEMENTATION = "chatstream_paged"
# The model-call keyword that carries one step's `AttentionMetadata` down to every layer.
METADATA_KWARG = "chatstream_attention_metadata"


def paged_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, None]:
    """query `[1, H, T, D]`, key/value `[1, KVH, T, D]` → output `[1, T, H, D]`."""
    meta = kwargs.pop(METADATA_KWARG, None)
    if meta is None:
        # Not an engine step (e.g. the user calls HF `generate` on a model they also gave to
        # the engine): the model keeps working with plain SDPA attention.
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if not isinstance(meta, AttentionMetadata):
        raise TypeError(f"{METADATA_KWARG} must be AttentionMetadata, got {type(meta).__name__}")
    if kwargs.get("softcap") is not None:
        raise NotImplementedError("attention logit soft-capping is not supported by the paged engine")
    meta.num_layer_calls += 1
    layer = module.layer_idx
    cache = meta.kv_cache
    q = query[0]  # [H, T, D]
    k_new = key[0].transpose(0, 1)  # [T, KVH, D]
    v_new = value[0].transpose(0, 1)
    cache.write(layer, meta.cache_rows, k_new, v_new)
    key_blocks = cache.key_blocks[layer]
    value_blocks = cache.value_blocks[layer]
    gqa = q.shape[0] != key.shape[1]

    out = torch.empty(q.shape[1], q.shape[0], q.shape[2], dtype=q.dtype, device=q.device)  # [T, H, D]
    scale = scaling if scaling is not None else q.shape[-1] ** -0.5
    nd = meta.num_decode_tokens
    if nd and meta.decode_kernel is not None:
        qd = q[:, :nd].transpose(0, 1)  # [D, H, hd]
        out[:nd] = meta.decode_kernel(qd, key_blocks, value_blocks, meta.decode_block_tables,
                                      meta.decode_context_lens, scale)
    elif nd:
        qd = q[:, :nd].transpose(0, 1).unsqueeze(2)  # [D, H, 1, hd]
        kd = gather_blocks(key_blocks, meta.decode_block_tables)  # [D, KVH, L, hd]
        vd = gather_blocks(value_blocks, meta.decode_block_tables)
        od = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=meta.decode_mask, scale=scaling, enable_gqa=gqa)
        out[:nd] = od.squeeze(2)
    if meta.attend_prefills(q.transpose(0, 1), out, key_blocks, value_blocks, scale):
        return out.unsqueeze(0), None
    for p in meta.prefills:
        qp = q[:, p.query_start:p.query_start + p.query_len].unsqueeze(0)  # [1, H, n, hd]
        if p.mask is None:
            kp = key[:, :, p.query_start:p.query_start + p.query_len]
            vp = value[:, :, p.query_start:p.query_start + p.query_len]
            op = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, scale=scaling, enable_gqa=gqa)
        else:
            op = attend_from_blocks(qp, key_blocks, value_blocks, p, scaling, gqa)
        out[p.query_start:p.query_start + p.query_len] = op[0].transpose(0, 1)
    return out.unsqueeze(0), None


AttentionInterface.register(ATTN_IMPLEMENTATION, paged_attention_forward)
