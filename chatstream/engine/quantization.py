"""Weight-only int8 quantization of a model's linear layers (`quantization="int8"`).

One request at a time, a decode step reads every weight once for a single row of activations,
so its speed is bound by how many bytes the weights take. Storing them as int8 (a quarter of
fp32, half of bf16) with one scale per output channel makes that read 4x smaller.

Quantization: symmetric, per output channel: `scale[o] = max|W[o, :]| / 127`,
`q[o, i] = round(W[o, i] / scale[o])`, so `W ≈ q * scale[:, None]`. Activations stay in floating
point (weight-only): `y = (x @ q.T) * scale`.

Kernels:
- CPU, up to 15 rows (decoding for a few requests): our compiled `int8_matmul` (`cpu_int8_ops.py`,
  fp32 activations, built with the attention kernel) where it is available, else PyTorch's
  `torch._weight_int8pack_mm`, whose vectorized path takes bf16 activations (fp32 input is several
  times slower there), so fp32 activations are rounded to bf16 for it.
- CPU, 16 rows or more (prompts, larger batches), where that kernel scales badly: the int8 weight
  is widened for the call and multiplied by oneDNN: to bf16 where the CPU has bf16 instructions
  (AMX or AVX512-BF16), else to fp32 (oneDNN would emulate bf16 there: 3-5x slower than fp32 on
  16-512 rows of a 3072x576 weight).
- CUDA and elsewhere: the int8 weight is converted to the activations' dtype inside the call
  (`F.linear(x, q.to(dtype)) * scale`): the memory at rest is int8, the product runs in cuBLAS.

Sibling projections (q/k/v, gate/up) are quantized as one matrix and multiplied once
(`linear_fusion.py`). The input embedding stays in floating point (a lookup reads one row per token); an LM head tied
to it gets its own int8 copy. The dense weights are dropped (`weight_swap.py`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chatstream.engine.cpu_attention import CpuOps
from chatstream.engine.cpu_weights import padded_rows
from chatstream.engine.linear_fusion import FusedMember, FusedProduct, sibling_groups
from chatstream.engine.weight_swap import dense_weight_of, linear_modules, shared_weight_ids, swap_weight

QUANTIZATIONS = ("int8",)
QUANT_MAX = 127
QUANT_SLICE_ROWS = 4096
# Rows per call from which widening the weight to bf16 for a dense product beats the int8 kernel
# (measured on a 1536x576 weight, one core: 16 rows 0.46 vs 0.65 ms, 32 rows 0.51 vs 1.12 ms).
INT8_KERNEL_MAX_ROWS = 16


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 `[out, in]`, fp32 scales `[out]`) with `weight ≈ q * scale[:, None]`.

    Done in slices of rows, so the fp32 temporaries stay small even for a 49152-row LM head."""
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scale = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], QUANT_SLICE_ROWS):
        w = weight.detach()[start:start + QUANT_SLICE_ROWS].float()
        s = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / QUANT_MAX
        q[start:start + QUANT_SLICE_ROWS] = torch.round(w / s[:, None]).clamp_(-QUANT_MAX, QUANT_MAX)
        scale[start:start + QUANT_SLICE_ROWS] = s
    return q, scale


def int8_product_cpu(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor,
                     ops: CpuOps | None = None, wide: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """`x @ (q * scale).T` on CPU. Few rows: our compiled kernel (`ops`, fp32 activations) where it is
    built, else PyTorch's int8 weight kernel (activations rounded to bf16); more: the weight widened to
    `wide` (bf16, or fp32 on a CPU without bf16 instructions) for the call and a dense product (oneDNN)."""
    rows = x.reshape(-1, x.shape[-1])
    few = rows.shape[0] < INT8_KERNEL_MAX_ROWS
    if few and ops is not None and rows.dtype in (torch.float32, torch.bfloat16):
        out = ops.int8_matmul(rows if rows.stride(-1) == 1 else rows.contiguous(), qweight, scales)
        return out.reshape(*x.shape[:-1], -1)
    if few:
        compute = rows if rows.dtype in (torch.bfloat16, torch.float16) else rows.to(torch.bfloat16)
        out = torch._weight_int8pack_mm(compute.contiguous(), qweight, scales.to(compute.dtype))
    else:  # padded like the prepacked products, for the same reason (oneDNN's per-shape primitives)
        compute = rows if rows.dtype == torch.float16 else rows.to(wide)
        out = int8_product_dequantized(padded_rows(compute), qweight, scales)[: rows.shape[0]]
    return out.to(x.dtype).reshape(*x.shape[:-1], -1)


def int8_product_dequantized(x: torch.Tensor, qweight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The same product with the weight converted to `x`'s dtype for the call (any device)."""
    return F.linear(x, qweight.to(x.dtype)) * scales.to(x.dtype)


class Int8Weight:
    """One weight `[out, in]` as per-channel int8 (a `LinearKernel`); `ops`: our compiled CPU kernels, if built;
    `wide`: the dtype the weight is widened to for CPU products of many rows."""

    def __init__(self, weight: torch.Tensor, ops: CpuOps | None = None, wide: torch.dtype = torch.bfloat16) -> None:
        self.wide = wide
        self.qweight, scales = quantize_per_channel(weight)
        self.dtype = weight.dtype
        self.on_cpu = weight.device.type == "cpu"
        # On CPU the scales stay fp32 (our kernel's; PyTorch's paths convert them per call).
        self.scales = scales if self.on_cpu else scales.to(weight.dtype)
        self.ops = ops if self.on_cpu else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.on_cpu:
            return int8_product_cpu(x, self.qweight, self.scales, self.ops, self.wide)
        return int8_product_dequantized(x, self.qweight, self.scales)

    def dense_weight(self) -> torch.Tensor:
        return (self.qweight.float() * self.scales.float()[:, None]).to(self.dtype)


def quantize_int8(model: nn.Module, ops: CpuOps | None = None, wide: torch.dtype = torch.bfloat16) -> int:
    """Quantize every floating-point linear weight of `model` in place; returns how many. `ops`: our
    compiled CPU kernels, for the products of a few rows (None: PyTorch's kernel); `wide`: what CPU products
    of many rows widen the weights to (bf16 where the CPU has bf16 instructions, else fp32)."""
    shared = shared_weight_ids(model)
    # Weights already quantized by someone else (e.g. bitsandbytes) are left alone.
    by_name = {name: m for name, m in linear_modules(model) if m.weight.is_floating_point()}
    count = 0
    with torch.no_grad():
        for group in list(sibling_groups(model, by_name, shared)):
            weights = [m.weight for _, m in group]
            fused = FusedProduct(Int8Weight(torch.cat([w.detach() for w in weights]), ops, wide),
                                 [w.shape[0] for w in weights])
            for index, (name, module) in enumerate(group):
                swap_weight(module, FusedMember(fused, index), shared)
                del by_name[name]
                count += 1
        for module in by_name.values():
            swap_weight(module, Int8Weight(dense_weight_of(module), ops, wide), shared)
            count += 1
    return count
