"""Engine steps of Llama-family models on the CPU, layer by layer in a handful of calls.

A decode step multiplies a few dozen rows by each weight matrix; what HF's modules do between the
products (RMSNorm, rotary embeddings, the gated activation, residual adds, reshapes, the attention
interface's bookkeeping) is about a hundred PyTorch operations per layer, each dispatched from
Python for those few rows. On a small model that costs as much as the products themselves (on
SmolLM2-135M in bf16, about a third of the step). This runner reads the same modules' prepared
weights and runs each layer as nine calls: fused norm, q/k/v product, rotary + cache write (one
pass), the paged decode kernel, output product, fused residual add + norm, gate/up product, fused
activation, down product (`cpu_layer_ops.py`). Where the gate/up weight is our fp32 panels, a prompt
chunk's gate/up product and activation are one pass (`PanelWeight.gated`): its `[T, 2I]` product
is never written out and read back.

It runs every step, those that keep prompt log-probs too (their prompt tokens' rows go through the
LM head with the sampled ones). Decodes attend through the paged decode kernel, prompt chunks
through SDPA over their blocks, as in `paged_attention.py`.

It applies to models whose layers are exactly Llama's shape (`SUPPORTED_MODEL_TYPES`: RMSNorm,
rotate-half rotary embeddings, q/k/v and gate/up fused by the weight preparation, SiLU gating, no
extra multipliers); anything else keeps HF's forward for every step. The rotary tables come from
the model's own rotary module, so its scaling variants (llama3, linear, dynamic, yarn) are its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from chatstream.engine.cpu_attention import CpuOps, DecodeKernel
from chatstream.engine.cpu_weights import PanelWeight
from chatstream.engine.kv_cache import KVCache
from chatstream.engine.linear_fusion import FusedMember
from chatstream.engine.attention_metadata import AttentionMetadata, attend_from_blocks
from chatstream.engine.weight_swap import LinearKernel, kernel_of

SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
_FUSED_DTYPES = (torch.float32, torch.bfloat16)


@dataclass(frozen=True)
class _Product:
    """One prepared linear product with its bias (None when the module has none)."""

    kernel: LinearKernel
    bias: torch.Tensor | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.kernel(x)
        return out if self.bias is None else out + self.bias

    def gated(self, x: torch.Tensor, ops: CpuOps) -> torch.Tensor:
        """`silu(gate) * up` of this `[gate; up]` product: in the product's own pass where the kernel has one."""
        if self.bias is None and isinstance(self.kernel, PanelWeight):
            return self.kernel.gated(x)
        return ops.silu_mul(self(x))


@dataclass(frozen=True)
class _Layer:
    input_norm: torch.Tensor
    input_eps: float
    qkv: _Product
    out: _Product
    post_norm: torch.Tensor
    post_eps: float
    gate_up: _Product
    down: _Product


def _fused_product(modules: list[nn.Module]) -> _Product | None:
    """The one product behind sibling modules fused by the weight preparation, or None."""
    kernels = [kernel_of(m) for m in modules]
    if not all(isinstance(k, FusedMember) for k in kernels):
        return None
    group = kernels[0].group  # type: ignore[union-attr]
    if [k.index for k in kernels] != list(range(len(modules))) or any(k.group is not group for k in kernels):  # type: ignore[union-attr]
        return None
    biases = [m.bias for m in modules]
    if all(b is None for b in biases):
        return _Product(group.kernel, None)
    if any(b is None for b in biases):
        return None
    return _Product(group.kernel, torch.cat([b.detach() for b in biases]))  # type: ignore[union-attr]


def _single_product(module: nn.Module) -> _Product | None:
    kernel = kernel_of(module)
    if kernel is None or isinstance(kernel, FusedMember):
        return None
    bias = getattr(module, "bias", None)
    return _Product(kernel, None if bias is None else bias.detach())


def _norm(module: nn.Module) -> tuple[torch.Tensor, float] | None:
    weight, eps = getattr(module, "weight", None), getattr(module, "variance_epsilon", None)
    if not isinstance(weight, torch.Tensor) or not isinstance(eps, float) or "RMSNorm" not in type(module).__name__:
        return None
    return weight.detach(), eps


def _layer(decoder_layer: nn.Module) -> _Layer | None:
    attn, mlp = getattr(decoder_layer, "self_attn", None), getattr(decoder_layer, "mlp", None)
    if attn is None or mlp is None or type(getattr(mlp, "act_fn", None)).__name__ not in ("SiLU", "SiLUActivation"):
        return None
    try:
        qkv = _fused_product([attn.q_proj, attn.k_proj, attn.v_proj])
        gate_up = _fused_product([mlp.gate_proj, mlp.up_proj])
        out, down = _single_product(attn.o_proj), _single_product(mlp.down_proj)
    except AttributeError:
        return None
    norms = _norm(decoder_layer.input_layernorm), _norm(decoder_layer.post_attention_layernorm)
    if qkv is None or gate_up is None or out is None or down is None or None in norms:
        return None
    (n1, e1), (n2, e2) = norms  # type: ignore[misc]
    return _Layer(n1, e1, qkv, out, n2, e2, gate_up, down)


class FusedDecoder:
    """Runs a step of a supported model (see `build`) straight through its layers."""

    def __init__(self, model: nn.Module, layers: list[_Layer], final_norm: tuple[torch.Tensor, float],
                 ops: CpuOps, kernel: DecodeKernel, kv_cache: KVCache) -> None:
        config = model.config.get_text_config()
        self.model = model
        self.layers = layers
        self.final_norm, self.final_eps = final_norm
        self.ops = ops
        self.kernel = kernel
        self.kv_cache = kv_cache
        self.heads = config.num_attention_heads
        self.kv_heads = kv_cache.spec.num_kv_heads
        self.head_dim = kv_cache.spec.head_dim
        self.scale = float(model.model.layers[0].self_attn.scaling)
        self.embed = model.model.embed_tokens
        self.rotary = model.model.rotary_emb
        self.lm_head = model.lm_head
        self.vocab_size = getattr(self.lm_head, "out_features", None) or config.vocab_size
        self._no_residual = torch.empty(0, dtype=model.dtype)

    @classmethod
    def build(cls, model: nn.Module, ops: CpuOps | None, kernel: DecodeKernel | None,
              kv_cache: KVCache) -> FusedDecoder | None:
        """The runner for `model`, or None when its layers are not Llama's shape or the ops are missing."""
        config = model.config.get_text_config()
        inner = getattr(model, "model", None)
        if (ops is None or kernel is None or config.model_type not in SUPPORTED_MODEL_TYPES
                or model.dtype not in _FUSED_DTYPES or model.device.type != "cpu" or inner is None
                or getattr(config, "hidden_act", "silu") != "silu" or getattr(config, "pretraining_tp", 1) > 1
                or kv_cache.spec.head_dim % 2 or not hasattr(inner, "rotary_emb") or not hasattr(model, "lm_head")):
            return None
        layers = [_layer(layer) for layer in inner.layers[:config.num_hidden_layers]]
        final_norm = _norm(inner.norm)
        if any(layer is None for layer in layers) or final_norm is None or not layers:
            return None
        return cls(model, layers, final_norm, ops, kernel, kv_cache)  # type: ignore[arg-type]

    def logits(self, input_ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor, meta: AttentionMetadata,
               rows: torch.Tensor) -> torch.Tensor:
        """Logits `[len(rows), V]` (the model's dtype) of the step's packed tokens `[T]` (decodes first, then prompt
        chunks, as `meta` describes them) at `positions`; their keys and values go into `slots`."""
        ops, cache = self.ops, self.kv_cache
        h = self.embed(input_ids)  # [T, hidden]
        cos, sin = self.rotary(h, positions[None])
        cos, sin = cos.reshape(h.shape[0], -1), sin.reshape(h.shape[0], -1)
        x, residual = ops.add_rms_norm(h, self._no_residual, self.layers[0].input_norm, self.layers[0].input_eps)
        for index, layer in enumerate(self.layers):
            k_blocks, v_blocks = cache.key_blocks[index], cache.value_blocks[index]
            q = ops.rope_and_cache(layer.qkv(x), cos, sin, k_blocks, v_blocks, slots,
                                   self.heads, self.kv_heads, self.head_dim)
            attended = self._attention(q, k_blocks, v_blocks, meta)
            x, residual = ops.add_rms_norm(layer.out(attended.view(h.shape[0], -1)), residual, layer.post_norm,
                                           layer.post_eps)
            h = layer.down(layer.gate_up.gated(x, ops))
            if index + 1 < len(self.layers):
                following = self.layers[index + 1]
                x, residual = ops.add_rms_norm(h, residual, following.input_norm, following.input_eps)
        if rows.shape[0] == 0:  # only prompt chunks that end before their prompt does: nothing samples
            return h.new_empty(0, self.vocab_size)
        # Only the rows asked for (in their order) go through the final norm and the LM head; a decode step asks
        # for every row in order, which needs no copy.
        if rows.shape[0] != h.shape[0] or not torch.equal(rows, torch.arange(h.shape[0], device=rows.device)):
            h, residual = h[rows], residual[rows]
        x, _ = ops.add_rms_norm(h, residual, self.final_norm, self.final_eps)
        return self.lm_head(x)

    def _attention(self, q: torch.Tensor, k_blocks: torch.Tensor, v_blocks: torch.Tensor,
                   meta: AttentionMetadata) -> torch.Tensor:
        """Each token of `q` `[T, H, hd]` attends its request's cached keys and values (its own included)."""
        decodes = meta.num_decode_tokens
        if decodes and not meta.prefills:
            return self.kernel(q, k_blocks, v_blocks, meta.decode_block_tables, meta.decode_context_lens, self.scale)
        out = torch.empty_like(q)
        if decodes:
            out[:decodes] = self.kernel(q[:decodes], k_blocks, v_blocks, meta.decode_block_tables,
                                        meta.decode_context_lens, self.scale)
        if meta.attend_prefills(q, out, k_blocks, v_blocks, self.scale):
            return out
        for p in meta.prefills:
            end = p.query_start + p.query_len
            qp = q[p.query_start:end].transpose(0, 1).unsqueeze(0)  # [1, H, n, hd]
            op = attend_from_blocks(qp, k_blocks, v_blocks, p, self.scale, self.heads != self.kv_heads)
            out[p.query_start:end] = op[0].transpose(0, 1)
        return out
