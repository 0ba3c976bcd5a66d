"""The int8 weight product for a few rows on the CPU (C++ source, built with `cpu_attention.py`'s kernel).

One request at a time, a decode step is bound by reading the weights: each int8 weight byte is
read once and used for the step's few rows. `int8_matmul(x, q, scales)` computes
`y[m, o] = scales[o] * sum_i x[m, i] * q[o, i]` in fp32 over blocks of four weight rows and up to
four rows of `x` (so a weight byte read serves four rows, and sixteen independent sums keep the
FMA units busy), the blocks split between the threads. Two things make it run near the memory's
speed rather than at half of it:
- the rows are short (576 bytes for SmolLM2), so the hardware prefetcher, which learns a stream
  before it runs ahead, stays behind; the kernel asks for the bytes 4 KB ahead itself;
- with AVX-512 the int8 to fp32 widening is one instruction per sixteen weights and the block's
  sums stay in registers (portable code otherwise, which the compiler vectorizes).
Activations stay in fp32 (bf16 inputs are widened), so the only rounding beyond fp32's is the
weights' own quantization. PyTorch's `_weight_int8pack_mm`, which the engine used before, takes
bf16 activations and is several times slower here (2-core Xeon, SmolLM2's layers at one row:
about 12 ms per step against 5-6 ms).
"""

from __future__ import annotations

INT8_SOURCE = r"""
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// How far ahead of the current byte the weight rows are asked for (about seven 576-byte rows;
// measured on SmolLM2's shapes: 1 KB ahead is 20 % slower, 4 KB the best of 1, 2 and 4 KB).
static constexpr int64_t kInt8Prefetch = 4096;

// sums[m * 4 + r] = x[m] . w[r] for `rows` (<= 4) weight rows of length K and M (<= 4) rows of x.
template <int M>
static inline void int8_dots(const float* xf, int64_t K, const int8_t* w, int rows, const int8_t* end, float* sums) {
#if defined(__AVX512F__)
  if (rows == 4) {
    __m512 acc[M][4];
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < 4; ++r) acc[m][r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= K; i += 16) {
      if ((i & 63) == 0)
        for (int r = 0; r < 4; ++r) {
          const int8_t* ahead = w + r * K + i + kInt8Prefetch;
          if (ahead < end) _mm_prefetch(reinterpret_cast<const char*>(ahead), _MM_HINT_T0);
        }
      __m512 wv[4];
      for (int r = 0; r < 4; ++r)
        wv[r] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * K + i))));
      for (int m = 0; m < M; ++m) {
        const __m512 xv = _mm512_loadu_ps(xf + m * K + i);
        for (int r = 0; r < 4; ++r) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
      }
    }
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < 4; ++r) {
        float s = _mm512_reduce_add_ps(acc[m][r]);
        for (int64_t j = i; j < K; ++j) s += xf[m * K + j] * static_cast<float>(w[r * K + j]);
        sums[m * 4 + r] = s;
      }
    return;
  }
#endif
  for (int r = 0; r < rows; ++r) {
    const int8_t* wr = w + r * K;
    for (int64_t i = 0; i < K; i += 64)
      if (wr + i + kInt8Prefetch < end) __builtin_prefetch(wr + i + kInt8Prefetch);
    for (int m = 0; m < M; ++m) {
      const float* xm = xf + m * K;
      float s = 0.f;
      #pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < K; ++i) s += xm[i] * static_cast<float>(wr[i]);
      sums[m * 4 + r] = s;
    }
  }
}

template <typename T>
static void int8_matmul_impl(const T* xp, int64_t xs, const int8_t* qp, const float* sp, T* op, int64_t M, int64_t N,
                             int64_t K) {
  const int8_t* end = qp + N * K;
  at::parallel_for(0, (N + 3) / 4, 4, [&](int64_t begin, int64_t stop) {
    std::vector<float> xf(M * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < K; ++i) xf[m * K + i] = load(xp + m * xs, i);
    float sums[16];
    for (int64_t block = begin; block < stop; ++block) {
      const int64_t o = block * 4;
      const int rows = static_cast<int>(std::min<int64_t>(4, N - o));
      const int8_t* w = qp + o * K;
      // The block's weight rows (a few KB) stay in L1 while every group of four x rows uses them.
      for (int64_t m0 = 0; m0 < M; m0 += 4) {
        const float* x0 = xf.data() + m0 * K;
        const int ms = static_cast<int>(std::min<int64_t>(4, M - m0));
        switch (ms) {
          case 1: int8_dots<1>(x0, K, w, rows, end, sums); break;
          case 2: int8_dots<2>(x0, K, w, rows, end, sums); break;
          case 3: int8_dots<3>(x0, K, w, rows, end, sums); break;
          default: int8_dots<4>(x0, K, w, rows, end, sums); break;
        }
        for (int m = 0; m < ms; ++m)
          for (int r = 0; r < rows; ++r) store(op + (m0 + m) * N, o + r, sums[m * 4 + r] * sp[o + r]);
      }
    }
  });
}

torch::Tensor int8_matmul(torch::Tensor x, torch::Tensor q, torch::Tensor scales) {
  TORCH_CHECK(x.dim() == 2 && x.stride(1) == 1, "x must be [rows, in] with contiguous rows");
  TORCH_CHECK(q.dim() == 2 && q.is_contiguous() && q.scalar_type() == torch::kInt8 && q.size(1) == x.size(1),
              "q must be a contiguous int8 [out, in]");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "float32 or bfloat16 activations only");
  auto s = scales.to(torch::kFloat32).contiguous();
  TORCH_CHECK(s.numel() == q.size(0), "one scale per output channel");
  const int64_t M = x.size(0), N = q.size(0), K = q.size(1);
  auto out = torch::empty({M, N}, x.options());
  pybind11::gil_scoped_release no_gil;  // the event loop runs while the engine multiplies
  if (dtype == torch::kFloat32) {
    int8_matmul_impl<float>(x.data_ptr<float>(), x.stride(0), q.data_ptr<int8_t>(), s.data_ptr<float>(),
                            out.data_ptr<float>(), M, N, K);
  } else {
    auto b = [](const torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
    int8_matmul_impl<uint16_t>(b(x), x.stride(0), q.data_ptr<int8_t>(), s.data_ptr<float>(), b(out), M, N, K);
  }
  return out;
}
"""
