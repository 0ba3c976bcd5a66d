"""Prepacked linear weights for fp32 and bf16 inference on CPU.

fp32 weights go to our panel kernel (`cpu_panel_ops.py`) where it is built (AVX-512), bf16 weights to
our tile kernel (`cpu_tile_ops.py`) where the CPU has AMX; both beat oneDNN on the layers' small
matrices. bf16 weights on a CPU with AVX-512 but no bf16 instructions (neither AMX nor AVX512-BF16)
go to the panel kernel too, widened to fp32 at load (exactly: a bf16 value is the top half of an
fp32 one): oneDNN would emulate bf16 there, and measured a third of the fp32 rate (SmolLM2, 32
requests), while fp32 products of bf16 values sum in fp32 as native bf16 products do and round
back to bf16. Everything else (bf16 with AVX512-BF16 but no AMX, other CPUs) goes to oneDNN as below.

Decoding multiplies a few dozen token rows by every weight matrix of the model at each step, so
on CPU the step time is mostly matrix products with a small M. oneDNN runs those far faster when
the weight is reordered once into its blocked layout (measured on SmolLM2-135M, 32 rows: the 30
layers' projections 1.7 ms instead of 2.7 ms per layer, the 49152-row LM head 11 ms instead of
28 ms) instead of on every call. In bf16, oneDNN uses the CPU's AMX tiles or AVX512-BF16
instructions where it has them (about 4x the fp32 rate for 32 rows on a Sapphire Rapids core).

Sibling projections that read the same input (q/k/v, gate/up) are packed as one matrix and
multiplied once (`linear_fusion.py`).

The original dense weights are dropped once packed (see `weight_swap.py`: `weight` and
`state_dict` still work, rebuilt from the packed copy), so prepacking costs no extra memory,
except for an LM head tied to the input embedding in oneDNN's layout, which keeps the shared
dense matrix for the embedding lookups (our panels and tiles answer those lookups themselves). The packed
copy is a snapshot: it assumes inference with frozen weights.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from chatstream.engine.cpu_attention import CpuOps
from chatstream.engine.cpu_panel_ops import pack_panels
from chatstream.engine.cpu_tile_ops import TILE_DEPTH, pack_tiles, tile_rows, unpack_tiles
from chatstream.engine.linear_fusion import FusedMember, FusedProduct, sibling_groups
from chatstream.engine.weight_swap import (dense_weight_of, linear_modules, serve_embedding_from_head,
                                          shared_weight_ids, swap_weight)

logger = logging.getLogger("chatstream.engine")

PACKABLE_DTYPES = (torch.float32, torch.bfloat16)


def row_bucket(num_rows: int) -> int:
    """The row count a product of `num_rows` rows is padded to (see `padded_rows`)."""
    if num_rows <= 4:
        return num_rows
    if num_rows <= 64:
        return -(-num_rows // 8) * 8
    for bucket in (96, 128, 192, 256, 384, 512):
        if num_rows <= bucket:
            return bucket
    return -(-num_rows // 256) * 256


def padded_rows(rows: torch.Tensor) -> torch.Tensor:
    """`rows` with zero rows appended up to `row_bucket(len(rows))`.

    oneDNN builds (JIT-compiles) and caches one primitive per input shape, about 1 MB each and a
    few ms to build. The engine's row count changes with nearly every step (requests come and go,
    prompt chunks vary), so unpadded products would grow that cache by hundreds of MB over a
    server's life (up to its 1024 entries) and pay the build again and again. With the buckets a
    model has at most 18 shapes per weight; the padding costs at most 7 rows below 64."""
    bucket = row_bucket(rows.shape[0])
    if bucket == rows.shape[0]:
        return rows
    padded = rows.new_zeros(bucket, rows.shape[1])
    padded[: rows.shape[0]] = rows
    return padded


def _packed_product(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    if rows.dtype != packed.dtype:
        return _packed_product(rows.to(packed.dtype), packed).to(x.dtype).reshape(*x.shape[:-1], -1)
    out = torch.ops.mkldnn._linear_pointwise(padded_rows(rows), packed, None, "none", [], "")[: rows.shape[0]]
    return out.reshape(*x.shape[:-1], out.shape[-1])


def _unpack(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    # I @ W.T = W.T exactly (each output is one weight times 1 plus zeros), in the packed dtype.
    eye = torch.eye(in_features, dtype=packed.dtype)
    return _packed_product(eye, packed).t().contiguous()


def _checked_row_ids(ids: torch.Tensor, out_features: int) -> torch.Tensor:
    """`ids` flattened, once every id is known to name a row (a packed layout has padding past the last)."""
    flat = ids.reshape(-1)
    if flat.numel() and not (0 <= int(flat.min()) and int(flat.max()) < out_features):
        raise IndexError(f"row ids must be in [0, {out_features})")
    return flat


class PackedWeight:
    """One weight `[out, in]` in oneDNN's blocked layout (a `LinearKernel`)."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.in_features = weight.shape[1]
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return _packed_product(x, self.packed)

    def dense_weight(self) -> torch.Tensor:
        return _unpack(self.packed, self.in_features)


class PanelWeight:
    """One fp32 or bf16 weight `[out, in]` as our kernel's fp32 panels (a `LinearKernel`; see `cpu_panel_ops.py`).

    A bf16 weight is widened to fp32 (exactly); its products take bf16 rows, run in fp32 and come back in
    bf16, and its dense weight and rows come back in bf16, bit for bit."""

    def __init__(self, weight: torch.Tensor, ops: CpuOps) -> None:
        self.out_features, self.in_features = weight.shape
        self.dtype = weight.dtype
        self.panels = pack_panels(weight.detach().float())
        self.ops = ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ops.panel_matmul(self._rows(x), self.panels, self.out_features)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        """`silu(gate) * up` where this is the fused `[gate; up]` weight: the product and the activation in one
        pass over many rows (`panel_gated_matmul`), never writing the full product."""
        out = self.ops.panel_gated_matmul(self._rows(x), self.panels, self.out_features)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features // 2)

    @staticmethod
    def _rows(x: torch.Tensor) -> torch.Tensor:
        """`x` as the kernel takes it: 2-D, fp32 or bf16, contiguous rows."""
        rows = x.reshape(-1, x.shape[-1])
        if rows.dtype not in (torch.float32, torch.bfloat16):
            rows = rows.float()
        return rows if rows.stride(-1) == 1 else rows.contiguous()

    def dense_weight(self) -> torch.Tensor:
        return self.panels.transpose(1, 2).reshape(-1, self.in_features)[: self.out_features].to(self.dtype).contiguous()

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """`W[ids]` read out of the panels (the lookups of an embedding tied to this weight), bit for bit."""
        flat = _checked_row_ids(ids, self.out_features)
        width = self.panels.shape[2]
        return self.panels[flat // width, :, flat % width].reshape(*ids.shape, self.in_features).to(self.dtype)


class TileWeight:
    """One bf16 weight `[out, in]` as our AMX kernel's tiles (a `LinearKernel`; see `cpu_tile_ops.py`)."""

    def __init__(self, weight: torch.Tensor, ops: CpuOps) -> None:
        self.out_features, self.in_features = weight.shape
        self.tiles = pack_tiles(weight.detach())
        self.ops = ops

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        out = self.ops.tile_matmul(rows.to(torch.bfloat16), self.tiles, self.out_features)
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def dense_weight(self) -> torch.Tensor:
        return unpack_tiles(self.tiles, self.out_features)

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """`W[ids]` read out of the tiles (the lookups of an embedding tied to this weight), bit for bit."""
        _checked_row_ids(ids, self.out_features)
        return tile_rows(self.tiles, ids)


def tiles_usable(ops: CpuOps | None) -> bool:
    """Whether bf16 weights can go to our tile kernel: it is built with AMX and Linux granted the tile state."""
    return ops is not None and bool(ops.tile_kernel_available())


def panels_usable(ops: CpuOps | None) -> bool:
    """Whether fp32 weights can go to our panel kernel: it is built and this CPU has AVX-512."""
    return ops is not None and bool(ops.panel_kernel_available())


def prepacking_works(dtype: torch.dtype = torch.float32) -> bool:
    """The op is private to PyTorch; check it exists and agrees with F.linear before relying on it."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        weight, x = torch.randn(24, 16).to(dtype), torch.randn(5, 16).to(dtype)
        got = PackedWeight(weight)(x).float()
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        return torch.allclose(got, F.linear(x, weight).float(), atol=tol, rtol=tol)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def prepack_linear_weights(model: nn.Module, fuse: bool = True, ops: CpuOps | None = None,
                           widen_bf16: bool = False) -> int:
    """Pack the fp32/bf16 linear weights of a CPU model in place; returns how many were packed. `ops`: our
    compiled CPU kernels; with them fp32 weights become panels for our kernel (`panels_usable`), and bf16 weights
    whose input width is a multiple of 32 tiles for our AMX kernel (`tiles_usable`). `widen_bf16` (for a CPU
    without bf16 instructions): bf16 weights become fp32 panels too, where the panel kernel is built."""
    candidates = [(name, m) for name, m in linear_modules(model)
                  if m.weight.dtype in PACKABLE_DTYPES and m.weight.device.type == "cpu"]
    dtypes = {m.weight.dtype for _, m in candidates}
    if not candidates or not all(prepacking_works(d) for d in dtypes):
        logger.info("oneDNN weight prepacking is not available; using plain matrix products")
        return 0
    panels, tiles = panels_usable(ops), tiles_usable(ops)

    def kernel(weight: torch.Tensor) -> PanelWeight | TileWeight | PackedWeight:
        if tiles and weight.dtype == torch.bfloat16 and weight.shape[1] % TILE_DEPTH == 0:
            return TileWeight(weight, ops)  # type: ignore[arg-type]  # tiles_usable: ops is not None
        if panels and (weight.dtype == torch.float32 or (widen_bf16 and weight.dtype == torch.bfloat16)):
            return PanelWeight(weight, ops)  # type: ignore[arg-type]  # panels_usable: ops is not None
        return PackedWeight(weight)

    shared = shared_weight_ids(model)
    by_name = dict(candidates)
    count = 0
    with torch.no_grad():
        if fuse:
            for group in list(sibling_groups(model, by_name, shared)):
                weights = [m.weight for _, m in group]
                fused = FusedProduct(kernel(torch.cat([w.detach() for w in weights])),
                                     [w.shape[0] for w in weights])
                for index, (name, module) in enumerate(group):
                    swap_weight(module, FusedMember(fused, index), shared)
                    del by_name[name]
                    count += 1
        for module in by_name.values():
            swap_weight(module, kernel(dense_weight_of(module)), shared)
            count += 1
        if (panels or tiles) and hasattr(model, "get_output_embeddings"):
            serve_embedding_from_head(model)  # a tied head's panels or tiles hold the embedding too: keep it once
    return count
