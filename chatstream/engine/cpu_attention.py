"""A paged-attention decode kernel for the CPU, compiled on first use.

For decodes (one query token per request) SDPA needs each request's K/V gathered out of the
blocks into a padded tensor first, and its flash kernel is tuned for long queries, not for one.
This kernel reads K and V straight from the blocks through the block table, one (request, KV
head) pair per task, and computes the softmax-weighted sum for that head group's query heads in
one pass: no gather, no padding, no mask.

The cache may be fp32 or bf16; scores, softmax and the weighted sum are computed in fp32 either
way (bf16 values are widened as they are read), and the output is rounded to the cache's dtype.

It is C++ built with `torch.utils.cpp_extension.load_inline` the first time an engine starts on
the CPU (cached by torch afterwards), in one extension with the fused layer operations of
`cpu_layer_ops.py`, the int8 product of `cpu_int8_ops.py`, the fp32 product of `cpu_panel_ops.py`
and the bf16 product of `cpu_tile_ops.py`. Without a working compiler the engine falls back to
the SDPA path, with the same results up to float rounding.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Any, Callable, Protocol

import torch

from chatstream.engine.cpu_decode_avx512 import DECODE_AVX512_SOURCE
from chatstream.engine.cpu_int8_ops import INT8_SOURCE
from chatstream.engine.cpu_layer_ops import LAYER_OPS_FUNCTIONS, LAYER_OPS_SOURCE
from chatstream.engine.cpu_panel_ops import PANEL_FUNCTIONS, PANEL_SOURCE
from chatstream.engine.cpu_prefill_attention import PREFILL_FUNCTIONS, PREFILL_SOURCE
from chatstream.engine.cpu_task_split import TASK_SPLIT_SOURCE
from chatstream.engine.cpu_tile_ops import TILE_FUNCTIONS, TILE_SOURCE

logger = logging.getLogger("chatstream.engine")

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

// Element access for the two cache dtypes; bf16 is read as its raw bits and widened with a shift,
// which the compiler vectorizes (at::BFloat16's conversion does the same, less visibly).
static inline float load(const float* p, int64_t i) { return p[i]; }
static inline float load(const uint16_t* p, int64_t i) {
  uint32_t bits = static_cast<uint32_t>(p[i]) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
static inline void store(float* p, int64_t i, float v) { p[i] = v; }
static inline void store(uint16_t* p, int64_t i, float v) {
  at::BFloat16 b(v);  // round to nearest even
  p[i] = b.x;
}

// Blocks sit anywhere in the cache, so the hardware prefetcher cannot guess the next one: ask
// for it while the current one is being computed on.
template <typename T>
static inline void prefetch_block(const T* p, int64_t n) {
  const int64_t step = 64 / sizeof(T);
  for (int64_t i = 0; i < n; i += step) __builtin_prefetch(p + i, 0, 3);
}

// out[d, h, :] = softmax(q[d, h] . K[d, :L]^T * scale) V[d, :L], K/V read through block tables.
// q, out: [D, H, hd]; k/v cache: [num_blocks, KVH, block_size, hd]; block_tables: [D, max_blocks].
// T is float (fp32) or uint16_t (bf16 bits); scores and sums are always accumulated in fp32.
template <typename T>
static void decode(const T* qp, const T* kp, const T* vp, const int64_t* tp, const int64_t* lp, T* op,
                   int64_t D, int64_t H, int64_t hd, int64_t KVH, int64_t bs, int64_t max_blocks, float sc) {
  const int64_t G = H / KVH;
  parallel_tasks(D * KVH, [&](auto&& next) {  // cpu_task_split.py: a held-up thread's tasks are taken over
    std::vector<float> scores, acc, qf;
    for (int64_t task; (task = next()) >= 0;) {
      const int64_t d = task / KVH, kvh = task % KVH;
      const int64_t L = lp[d];
      scores.assign(G * L, 0.f);
      acc.assign(G * hd, 0.f);
      qf.resize(G * hd);
      const T* qd = qp + (d * H + kvh * G) * hd;
      for (int64_t i = 0; i < G * hd; ++i) qf[i] = load(qd, i) * sc;
      // Calls fn(l, row) for each position l < L with this head's row of `cache` at l, one block at
      // a time (a head's rows of a block are contiguous), prefetching the next block meanwhile.
      auto for_each_row = [&](const T* cache, auto&& fn) {
        for (int64_t start = 0; start < L; start += bs) {
          const int64_t* table = tp + d * max_blocks + start / bs;
          const T* rows = cache + (table[0] * KVH + kvh) * bs * hd;
          if (start + bs < L) prefetch_block(cache + (table[1] * KVH + kvh) * bs * hd, bs * hd);
          const int64_t n = std::min(bs, L - start);
          for (int64_t j = 0; j < n; ++j) fn(start + j, rows + j * hd);
        }
      };
      // Pass 1: scaled scores of every query head of the group against every key.
      for_each_row(kp, [&](int64_t l, const T* kj) {
        for (int64_t g = 0; g < G; ++g) {
          const float* qg = qf.data() + g * hd;
          float s = 0.f;
          #pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < hd; ++i) s += qg[i] * load(kj, i);
          scores[g * L + l] = s;
        }
      });
      for (int64_t g = 0; g < G; ++g) {
        float* sg = scores.data() + g * L;
        float mx = sg[0];
        for (int64_t l = 1; l < L; ++l) mx = std::max(mx, sg[l]);
        float sum = 0.f;
        // Vectorized exp (libmvec, which needs -ffast-math; nothing here relies on inf or NaN): a scalar exp per score was most of the kernel's time.
        #pragma omp simd reduction(+ : sum)
        for (int64_t l = 0; l < L; ++l) { const float e = std::exp(sg[l] - mx); sg[l] = e; sum += e; }
        const float inv = 1.f / sum;
        for (int64_t l = 0; l < L; ++l) sg[l] *= inv;
      }
      // Pass 2: the probability-weighted sum of values.
      for_each_row(vp, [&](int64_t l, const T* vj) {
        for (int64_t g = 0; g < G; ++g) {
          const float p = scores[g * L + l];
          float* a = acc.data() + g * hd;
          #pragma omp simd
          for (int64_t i = 0; i < hd; ++i) a[i] += p * load(vj, i);
        }
      });
      T* od = op + (d * H + kvh * G) * hd;
      for (int64_t i = 0; i < G * hd; ++i) store(od, i, acc[i]);
    }
  });
}

"""

# The entry point; `decode_vectorized` (cpu_decode_avx512.py) comes between the generic loop and it.
_ENTRY_SOURCE = r"""
torch::Tensor paged_decode_attention(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                                     torch::Tensor block_tables, torch::Tensor context_lens, double scale) {
  const auto dtype = k_cache.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "float32 or bfloat16 caches only");
  TORCH_CHECK(q.scalar_type() == dtype && v_cache.scalar_type() == dtype, "q, k and v must share a dtype");
  q = q.contiguous();
  auto tables = block_tables.to(torch::kInt64).contiguous();
  auto lens = context_lens.to(torch::kInt64).contiguous();
  const int64_t D = q.size(0), H = q.size(1), hd = q.size(2);
  const int64_t KVH = k_cache.size(1), bs = k_cache.size(2), max_blocks = tables.size(1);
  auto out = torch::empty_like(q);
  const float sc = static_cast<float>(scale);
  const int64_t* tp = tables.data_ptr<int64_t>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  pybind11::gil_scoped_release no_gil;  // the event loop runs while the engine attends
  if (dtype == torch::kFloat32) {
    const float *qp = q.data_ptr<float>(), *kp = k_cache.data_ptr<float>(), *vp = v_cache.data_ptr<float>();
    float* op = out.data_ptr<float>();
    if (!decode_vectorized(qp, kp, vp, tp, lp, op, D, H, hd, KVH, bs, max_blocks, sc))
      decode<float>(qp, kp, vp, tp, lp, op, D, H, hd, KVH, bs, max_blocks, sc);
  } else {
    auto bits = [](torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
    if (!decode_vectorized(bits(q), bits(k_cache), bits(v_cache), tp, lp, bits(out), D, H, hd, KVH, bs, max_blocks, sc))
      decode<uint16_t>(bits(q), bits(k_cache), bits(v_cache), tp, lp, bits(out), D, H, hd, KVH, bs, max_blocks, sc);
  }
  return out;
}
"""

DecodeKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


class CpuOps(Protocol):
    """What is compiled beside the kernel: the fused per-layer operations (`cpu_layer_ops.py`), the
    int8 weight product (`cpu_int8_ops.py`), the fp32 panel product (`cpu_panel_ops.py`) and the bf16 AMX
    product (`cpu_tile_ops.py`)."""

    def add_rms_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                     eps: float) -> list[torch.Tensor]: ...

    def rope_and_cache(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                       v_cache: torch.Tensor, slots: torch.Tensor, heads: int, kv_heads: int,
                       head_dim: int) -> torch.Tensor: ...

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor: ...

    def prefill_kernel_available(self) -> bool: ...

    def paged_prefill_attention(self, q: torch.Tensor, out: torch.Tensor, k_cache: torch.Tensor,
                                v_cache: torch.Tensor, block_tables: torch.Tensor, starts: torch.Tensor,
                                lens: torch.Tensor, computed: torch.Tensor, scale: float) -> bool: ...

    def int8_matmul(self, x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor: ...

    def panel_kernel_available(self) -> bool: ...

    def panel_matmul(self, x: torch.Tensor, panels: torch.Tensor, out_features: int) -> torch.Tensor: ...

    def panel_gated_matmul(self, x: torch.Tensor, panels: torch.Tensor, out_features: int) -> torch.Tensor: ...

    def tile_kernel_available(self) -> bool: ...

    def tile_matmul(self, x: torch.Tensor, tiles: torch.Tensor, out_features: int) -> torch.Tensor: ...


# The compiled module is per process by nature; the lock makes an engine that needs the kernel wait
# for a build already running (started ahead by the builder) instead of starting a second one.
_BUILD_LOCK = threading.Lock()


def load_decode_kernel() -> DecodeKernel | None:
    """The compiled kernel, or None when it cannot be built here (then SDPA is used); built once."""
    with _BUILD_LOCK:
        module = _build_cpu_extension()
    return None if module is None else module.paged_decode_attention


def load_cpu_ops() -> CpuOps | None:
    """The fused layer operations and the weight products (same build as the kernel), or None when it cannot
    be built here."""
    with _BUILD_LOCK:
        return _build_cpu_extension()


def decode_kernel_is_loaded() -> bool:
    """Whether this process has already built or loaded the kernel (or found it unavailable)."""
    return _build_cpu_extension.cache_info().currsize > 0


@functools.cache
def _build_cpu_extension() -> Any:
    try:
        from torch.utils.cpp_extension import load_inline

        return load_inline(
            name="chatstream_cpu_ops_v18",
            cpp_sources=TASK_SPLIT_SOURCE + _SOURCE + DECODE_AVX512_SOURCE + _ENTRY_SOURCE + PREFILL_SOURCE
            + LAYER_OPS_SOURCE + INT8_SOURCE + PANEL_SOURCE + TILE_SOURCE,
            functions=["paged_decode_attention", *PREFILL_FUNCTIONS, *LAYER_OPS_FUNCTIONS, "int8_matmul",
                       *PANEL_FUNCTIONS, *TILE_FUNCTIONS],
            extra_cflags=["-O3", "-march=native", "-fopenmp", "-ffast-math"],
            extra_ldflags=["-fopenmp"],
            verbose=bool(os.environ.get("CHATSTREAM_VERBOSE_BUILD")),
        )
    except Exception as exc:  # noqa: BLE001 - no compiler, no headers, ...: fall back, say why
        logger.warning("CPU paged-attention kernel unavailable (%s); using SDPA", exc)
        return None
