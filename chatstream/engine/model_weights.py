"""Getting a loaded model's linear weights ready for the engine, and saying which path they run.

At start-up the engine either quantizes the linear weights (`quantization="int8"`, see
`quantization.py`) or, on CPU in fp32/bf16, prepacks them for our fp32 panel kernel, our bf16 AMX
tile kernel or oneDNN (`cpu_weights.py`); either way the dense originals are dropped.
`describe_matmuls` is the one start-up log line that says what the matrix products will run on,
e.g. "bf16 matmuls: compiled AMX tile kernel" or "bf16 matmuls: oneDNN prepacked, AVX512-BF16". On a CPU
without bf16 instructions, bf16 weights go to the fp32 panel kernel, widened (`widens_bf16`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from chatstream.engine.cpu_attention import CpuOps
from chatstream.engine.cpu_weights import panels_usable, prepack_linear_weights, tiles_usable
from chatstream.engine.mapped_memory import trim_heap
from chatstream.engine.quantization import INT8_KERNEL_MAX_ROWS, QUANTIZATIONS, quantize_int8


@dataclass(frozen=True)
class CpuMatmulSupport:
    """What the CPU offers for low-precision matrix products (as PyTorch detects it)."""

    amx_bf16: bool
    avx512_bf16: bool
    avx512: bool

    @property
    def bf16(self) -> bool:
        """True when bf16 products run natively (AMX or AVX512-BF16), not emulated."""
        return self.amx_bf16 or self.avx512_bf16

    @property
    def bf16_isa(self) -> str:
        return "AMX" if self.amx_bf16 else "AVX512-BF16" if self.avx512_bf16 else "no bf16 instructions"


def cpu_matmul_support() -> CpuMatmulSupport:
    cpu = torch.cpu

    def probe(name: str) -> bool:
        fn = getattr(cpu, name, None)
        try:
            return bool(fn()) if fn is not None else False
        except RuntimeError:
            return False

    return CpuMatmulSupport(probe("_is_amx_tile_supported"), probe("_is_avx512_bf16_supported"),
                            probe("_is_avx512_supported"))


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def widens_bf16(support: CpuMatmulSupport) -> bool:
    """Whether bf16 weights go to the fp32 panel kernel, widened (where it is built): on a CPU that would only
    emulate bf16 products."""
    return not support.bf16


def describe_matmuls(device: torch.device, dtype: torch.dtype, quantization: str | None, num_packed: int,
                     int8_kernel: bool = False, panels: bool = False, tiles: bool = False,
                     support: CpuMatmulSupport | None = None) -> str:
    name = _dtype_name(dtype)
    if quantization == "int8":
        wide = "fp32" if device.type == "cpu" and widens_bf16(support or cpu_matmul_support()) else "bf16"
        if device.type == "cpu" and int8_kernel:
            return (f"{name} activations x int8 weights: compiled int8 kernel up to {INT8_KERNEL_MAX_ROWS - 1} rows, "
                    f"oneDNN on {wide}-widened weights above")
        if device.type == "cpu":
            return (f"{name} activations x int8 weights: torch._weight_int8pack_mm"
                    f"{' (activations rounded to bf16 for it)' if dtype == torch.float32 else ''}")
        return f"{name} activations x int8 weights: dequantized per call, {device.type} BLAS"
    if device.type != "cpu":
        return f"{name} matmuls: {device.type} BLAS"
    support = support or cpu_matmul_support()
    if num_packed and panels and dtype == torch.bfloat16 and not tiles and widens_bf16(support):
        return (f"bf16 matmuls: compiled panel kernel, AVX-512, on bf16 weights widened to fp32 ({support.bf16_isa} "
                "on this CPU: fp32 products are faster here)")
    if num_packed == 0:
        path = "PyTorch's default (not prepacked)"
    elif panels and dtype == torch.float32:
        return "fp32 matmuls: compiled panel kernel, AVX-512"
    elif tiles and dtype == torch.bfloat16:
        # weights whose input width is not a multiple of 32 keep oneDNN (rare: none in the supported families)
        return "bf16 matmuls: compiled AMX tile kernel (oneDNN prepacked where a width is not a multiple of 32)"
    else:
        path = "oneDNN prepacked"
    if dtype == torch.bfloat16:
        if support.bf16:
            return f"bf16 matmuls: {path}, {support.bf16_isa}"
        return f"bf16 matmuls: {path}, emulated ({support.bf16_isa} on this CPU: fp32 is faster here)"
    return f"{name} matmuls: {path}{', AVX-512' if support.avx512 and num_packed else ''}"


def prepare_weights(model: nn.Module, quantization: str | None, prepack: bool, ops: CpuOps | None = None,
                    support: CpuMatmulSupport | None = None) -> str:
    """Quantize or prepack `model`'s linear weights in place; returns `describe_matmuls`' line. `ops`: our
    compiled CPU kernels (the int8 product of a few rows, the fp32 panel product), None where they are not
    built or not wanted. `support`: what the CPU offers (default: as PyTorch detects it)."""
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS} or None, got {quantization!r}")
    device, dtype = model.device, model.dtype
    if device.type == "cpu":
        support = support or cpu_matmul_support()
    num_packed = 0
    int8_kernel = ops is not None and device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
    if quantization == "int8":
        wide = torch.float32 if support is not None and widens_bf16(support) else torch.bfloat16
        quantize_int8(model, ops if int8_kernel else None, wide)
    elif prepack and support is not None:  # on CPU
        num_packed = prepack_linear_weights(model, ops=ops, widen_bf16=widens_bf16(support))
    if device.type == "cpu":
        trim_heap()
    panels = quantization is None and device.type == "cpu" and panels_usable(ops)
    tiles = quantization is None and device.type == "cpu" and tiles_usable(ops)
    return describe_matmuls(device, dtype, quantization, num_packed, int8_kernel, panels, tiles, support)
