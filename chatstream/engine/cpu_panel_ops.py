"""The fp32 weight product on CPUs with AVX-512 (C++ source, built with `cpu_attention.py`'s kernel).

A decode step multiplies a few dozen rows by every weight matrix, and a model like SmolLM2 has
small ones (576 wide). oneDNN's prepacked product reaches its full rate on the 49152-row LM head
but well under half of it on the layers' matrices, where its per-call work and the way it splits
them between threads weigh more than the arithmetic. This kernel is plain register blocking:
- `pack_panels(w)` stores `w [N, K]` as panels of 16 output channels, `[ceil(N / 16), K, 16]`, so
  one 64-byte load gives one input's weights for 16 outputs (zero rows pad the last panel);
- `panel_matmul(x, panels, N)` computes `x @ w.T`: each task takes two panels (32 outputs) and
  walks all rows of `x` eight at a time, with 16 accumulators in registers and every weight vector
  used for eight rows; the tasks are shared between the threads by `cpu_task_split.py`. While
  its first eight rows run, a task asks for the next task's panels, so the weights' trip from
  memory overlaps the arithmetic.
- From 64 rows on (a prompt chunk), the tasks are wider: `cpu_panel_wide_ops.py`, which also has
  the gated gate/up product (`panel_gated_matmul`).
Measured on SmolLM2's 30 layers (2-core Xeon, fp32), before the wider tasks: 37 ms against oneDNN's 45 ms at 32 rows,
15 against 23 ms at one row, 340 against 352 ms at 512 rows; the LM head is level. Asking ahead
took another 12-17 % off at 32 rows and 12-21 % at 8 (same run, alternating).
The sums run over the inputs in order in fp32, so results differ from oneDNN's only by rounding.
It also takes bf16 rows (a bf16 model's, on a CPU without bf16 instructions, whose weights were
widened into fp32 panels): they are widened in the call and the results stored as bf16, rounded
to nearest even as PyTorch rounds, without an fp32 copy of the output to convert afterwards.
Compiled only where the compiler targets AVX-512 (`-march=native`); elsewhere
`panel_kernel_available()` is false and the engine keeps oneDNN's prepacked product.
"""

from __future__ import annotations

import torch

from chatstream.engine.cpu_panel_wide_ops import PANEL_WIDE_SOURCE

PANEL_WIDTH = 16  # output channels per panel: one AVX-512 register of fp32 (kPanel below)


def pack_panels(weight: torch.Tensor) -> torch.Tensor:
    """`weight [N, K]` (fp32) as `[ceil(N / 16), K, 16]` panels, written in place: no padded temporary, so
    packing a large LM head never holds a third copy."""
    out_features, in_features = weight.shape
    full, rest = divmod(out_features, PANEL_WIDTH)
    panels = torch.empty(full + (rest > 0), in_features, PANEL_WIDTH, dtype=torch.float32)
    if full:
        panels[:full].copy_(weight[: full * PANEL_WIDTH].reshape(full, PANEL_WIDTH, in_features).transpose(1, 2))
    if rest:
        panels[full].zero_()
        panels[full, :, :rest].copy_(weight[full * PANEL_WIDTH:].t())
    return panels


PANEL_FUNCTIONS = ["panel_kernel_available", "panel_matmul", "panel_gated_matmul"]

_PANEL_KERNEL_SOURCE = r"""
bool panel_kernel_available() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

static constexpr int64_t kPanel = 16;  // output channels per panel: one AVX-512 register of fp32

#if defined(__AVX512F__)
#include <immintrin.h>

static inline void panel_put(float* o, __mmask16 mask, __m512 v) { _mm512_mask_storeu_ps(o, mask, v); }
#if defined(CHATSTREAM_VECTOR_RMS_NORM)
// bf16 results, rounded as PyTorch rounds (cpu_layer_ops.py's `put`, same build): no fp32 copy to convert.
static inline void panel_put(uint16_t* o, __mmask16 mask, __m512 v) { put(o, mask, v); }
#define CHATSTREAM_PANEL_BF16_OUT 1
#endif

// out[m, 0:32] for MR rows of x against two panels (the second skipped when `two` is false);
// the masks cut the stores at the last real output channel.
template <int MR, typename T>
static inline void panel_rows(const float* x, int64_t xs, const float* p0, int64_t K, T* o, int64_t os,
                              bool two, __mmask16 mask0, __mmask16 mask1, const float* ahead, const float* end) {
  __m512 a0[MR], a1[MR];
  for (int m = 0; m < MR; ++m) { a0[m] = _mm512_setzero_ps(); a1[m] = _mm512_setzero_ps(); }
  if (two) {
    const float* p1 = p0 + K * kPanel;
    for (int64_t k = 0; k < K; ++k) {
      const __m512 w0 = _mm512_loadu_ps(p0 + k * kPanel), w1 = _mm512_loadu_ps(p1 + k * kPanel);
      if (ahead != nullptr) {  // the next task's two panels, a line of each per line read here
        const float* next = ahead + k * kPanel;
        if (next < end) _mm_prefetch(reinterpret_cast<const char*>(next), _MM_HINT_T0);
        if (next + K * kPanel < end) _mm_prefetch(reinterpret_cast<const char*>(next + K * kPanel), _MM_HINT_T0);
      }
      for (int m = 0; m < MR; ++m) {
        const __m512 xv = _mm512_set1_ps(x[m * xs + k]);
        a0[m] = _mm512_fmadd_ps(xv, w0, a0[m]);
        a1[m] = _mm512_fmadd_ps(xv, w1, a1[m]);
      }
    }
  } else {
    for (int64_t k = 0; k < K; ++k) {
      const __m512 w0 = _mm512_loadu_ps(p0 + k * kPanel);
      for (int m = 0; m < MR; ++m) a0[m] = _mm512_fmadd_ps(_mm512_set1_ps(x[m * xs + k]), w0, a0[m]);
    }
  }
  for (int m = 0; m < MR; ++m) {
    panel_put(o + m * os, mask0, a0[m]);
    if (two) panel_put(o + m * os + kPanel, mask1, a1[m]);
  }
}

static __mmask16 lanes_below(int64_t n) {
  if (n <= 0) return 0;
  return n >= kPanel ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}
#endif
"""

_PANEL_CALLS_SOURCE = r"""
#if defined(__AVX512F__)
template <typename T>
static void panel_tasks(const float* xp, int64_t xs, const float* pp, int64_t M, int64_t K, int64_t N,
                        int64_t count, T* op) {
  if (M >= kWideRows) {
    wide_tasks(xp, xs, pp, M, K, N, count, op);
    return;
  }
  const float* panels_end = pp + count * K * kPanel;
  parallel_tasks((count + 1) / 2, [&](auto&& next) {
    for (int64_t task; (task = next()) >= 0;) {
      const int64_t first = task * 2 * kPanel;
      const bool two = first + kPanel < N;
      const __mmask16 mask0 = lanes_below(N - first), mask1 = lanes_below(N - first - kPanel);
      const float* p0 = pp + task * 2 * K * kPanel;
      T* o = op + first;
      // The first pass over the panels asks for the next task's (they follow in memory, and a thread walks
      // its share of the tasks in order): reading the weights from memory then overlaps the arithmetic
      // instead of following it.
      const float* ahead = p0 + 2 * K * kPanel;
      int64_t m = 0;
      for (; m + 8 <= M; m += 8)
        panel_rows<8>(xp + m * xs, xs, p0, K, o + m * N, N, two, mask0, mask1, m == 0 ? ahead : nullptr, panels_end);
      for (; m + 4 <= M; m += 4)
        panel_rows<4>(xp + m * xs, xs, p0, K, o + m * N, N, two, mask0, mask1, m == 0 ? ahead : nullptr, panels_end);
      for (; m < M; ++m)
        panel_rows<1>(xp + m * xs, xs, p0, K, o + m * N, N, two, mask0, mask1, m == 0 ? ahead : nullptr, panels_end);
    }
  });
}
#endif

static void check_panels(const torch::Tensor& x, const torch::Tensor& panels, int64_t N) {
  TORCH_CHECK(x.dim() == 2 && x.stride(1) == 1 &&
              (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16),
              "x must be float32 or bfloat16 [rows, in] with contiguous rows");
  TORCH_CHECK(panels.dim() == 3 && panels.is_contiguous() && panels.size(2) == kPanel &&
              panels.scalar_type() == torch::kFloat32 &&
              panels.size(1) == x.size(1) && panels.size(0) * kPanel >= N && N > (panels.size(0) - 1) * kPanel,
              "panels must come from pack_panels of an [N, in] weight");
}

// x: float32 or bfloat16 rows; the result has x's dtype (bf16 rows are widened first, exactly, and the fp32
// sums rounded once to bf16 at the end).
torch::Tensor panel_matmul(torch::Tensor x, torch::Tensor panels, int64_t N) {
  check_panels(x, panels, N);
#if defined(__AVX512F__)
  pybind11::gil_scoped_release no_gil;  // the event loop runs while the engine converts and multiplies
  const bool bf16 = x.scalar_type() == torch::kBFloat16;
  const torch::Tensor xf = bf16 ? x.to(torch::kFloat32) : x;
  const int64_t M = x.size(0), K = x.size(1), xs = xf.stride(0), count = panels.size(0);
  const float* xp = xf.data_ptr<float>();
  const float* pp = panels.data_ptr<float>();
#if defined(CHATSTREAM_PANEL_BF16_OUT)
  if (bf16) {
    auto out = torch::empty({M, N}, x.options());
    panel_tasks(xp, xs, pp, M, K, N, count, reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()));
    return out;
  }
#endif
  auto out = torch::empty({M, N}, xf.options());
  panel_tasks(xp, xs, pp, M, K, N, count, out.data_ptr<float>());
  return bf16 ? out.to(torch::kBFloat16) : out;
#else
  TORCH_CHECK(false, "the panel kernel needs AVX-512");
  return x;
#endif
}

// silu(gate) * up of x against the panels of a [gate; up] weight (N = 2n outputs): `[rows, n]` in x's dtype,
// silu_mul(panel_matmul(x, panels, N)) up to the last bits. Many rows with n a multiple of 16 (whole panels on each
// side) take gated_tasks; anything else is those two calls.
torch::Tensor panel_gated_matmul(torch::Tensor x, torch::Tensor panels, int64_t N) {
  check_panels(x, panels, N);
  TORCH_CHECK(N % 2 == 0, "a [gate; up] weight has an even number of outputs");
#if defined(CHATSTREAM_PANEL_GATED)
  const int64_t M = x.size(0), K = x.size(1), n = N / 2;
  if (M >= kWideRows && n % kPanel == 0) {
    pybind11::gil_scoped_release no_gil;
    const bool bf16 = x.scalar_type() == torch::kBFloat16;
    const torch::Tensor xf = bf16 ? x.to(torch::kFloat32) : x;
    auto out = torch::empty({M, n}, x.options());
    if (bf16) {
      gated_tasks(xf.data_ptr<float>(), xf.stride(0), panels.data_ptr<float>(), M, K, n,
                  reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>()));
    } else {
      gated_tasks(xf.data_ptr<float>(), xf.stride(0), panels.data_ptr<float>(), M, K, n, out.data_ptr<float>());
    }
    return out;
  }
#endif
  return silu_mul(panel_matmul(x, panels, N));
}
"""

# The many-row tasks use the kernel's helpers above and are used by the calls below.
PANEL_SOURCE = _PANEL_KERNEL_SOURCE + PANEL_WIDE_SOURCE + _PANEL_CALLS_SOURCE
