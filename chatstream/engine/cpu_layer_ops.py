"""The small per-layer operations of a decoder, fused into single CPU passes (C++ source).

A decode step of a small model spends as much time between its matrix products as in them: HF's
RMSNorm alone is eight tensor operations (upcast, square, mean, add, rsqrt, multiply, downcast,
multiply), rotary embeddings seven, the gated MLP's activation three, each a dispatch through
PyTorch with its own allocation, for a few dozen rows. These kernels do each in one pass over the
rows, and write the new keys and values straight into their cache blocks:

- `add_rms_norm(x, residual, weight, eps)`: `h = residual + x` (or `x` when residual is empty),
  returns `(weight * rms_normalized(h), h)`; `h` is the next layer's residual.
- `rope_and_cache(qkv, cos, sin, k_cache, v_cache, slots, H, KVH, hd)`: rotates the query and key
  heads of the fused q/k/v product (rotate-half convention), stores keys and values at their slots
  (cache layout `[num_blocks, KVH, block_size, hd]`) and returns the rotated queries `[T, H, hd]`.
- `silu_mul(gate_up)`: `silu(gate) * up` for the fused `[T, 2I]` gate/up product (`silu_lanes`
  is the same activation sixteen lanes at a time, for the panel product's gated tasks).

They round where HF's bf16 modules round (each PyTorch op rounds its result to the tensor's dtype),
so bf16 results match HF's eager modules up to the order of a sum; in fp32 every step is fp32.
They are compiled together with the attention kernel (`cpu_attention.py`), as one extension.
"""

from __future__ import annotations

LAYER_OPS_SOURCE = r"""
// Rounds v as a tensor of the element type would hold it (identity for float).
static inline float round_to(const float*, float v) { return v; }
static inline float round_to(const uint16_t*, float v) { return static_cast<float>(at::BFloat16(v)); }

template <typename T>
static void add_rms_norm_impl(const T* xp, int64_t xs, const T* rp, int64_t rs, const T* wp, T* op, T* hp,
                              int64_t rows, int64_t n, float eps) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> h(n);
    for (int64_t r = begin; r < end; ++r) {
      const T* x = xp + r * xs;
      float ss = 0.f;
      for (int64_t i = 0; i < n; ++i) {
        float v = load(x, i);
        if (rp != nullptr) v = round_to(x, v + load(rp + r * rs, i));
        h[i] = v;
        ss += v * v;
      }
      const float inv = 1.f / std::sqrt(ss / static_cast<float>(n) + eps);
      T* o = op + r * n;
      T* hr = hp + r * n;
      for (int64_t i = 0; i < n; ++i) {
        store(hr, i, h[i]);
        store(o, i, load(wp, i) * round_to(x, h[i] * inv));
      }
    }
  });
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define CHATSTREAM_VECTOR_RMS_NORM 1
// Sixteen lanes at a time (the generic loop above stays scalar: its store through `h` and the
// residual branch keep the compiler from vectorizing it, which made it 3-4x slower than this on 32
// to 512 rows of 576). Rows go to the threads sixteen at a time, so a decode's few rows do not wake
// a second thread for microseconds of work. Every element is rounded where the loop above rounds
// (bf16: to nearest even, NaN to 0x7FC0, as at::BFloat16 does); only the sum of squares runs in
// another order.
static inline __m512 lanes(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline __m512 lanes(const uint16_t* p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
static inline __m512i bf16_bits(__m512 v) {  // in the low half of each 32-bit lane
  const __m512i u = _mm512_castps_si512(v);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),
                                        _mm512_set1_epi32(0x7FFF));
  const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  return _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
}
static inline __m512 rounded(const float*, __m512 v) { return v; }
static inline __m512 rounded(const uint16_t*, __m512 v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_bits(v), 16));
}
static inline void put(float* p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
static inline void put(uint16_t* p, __mmask16 m, __m512 v) { _mm512_mask_cvtepi32_storeu_epi16(p, m, bf16_bits(v)); }

template <typename T>
static void add_rms_norm_vector(const T* xp, int64_t xs, const T* rp, int64_t rs, const T* wp, T* op, T* hp,
                                int64_t rows, int64_t n, float eps) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x = xp + r * xs;
      const T* res = rp != nullptr ? rp + r * rs : nullptr;
      T* h = hp + r * n;
      T* o = op + r * n;
      __m512 squares = _mm512_setzero_ps();
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
        __m512 v = lanes(x + i, m);
        if (res != nullptr) v = rounded(x, _mm512_add_ps(v, lanes(res + i, m)));
        put(h + i, m, v);
        squares = _mm512_fmadd_ps(v, v, squares);
      }
      const __m512 inv = _mm512_set1_ps(1.f / std::sqrt(_mm512_reduce_add_ps(squares) / static_cast<float>(n) + eps));
      for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
        const __m512 normed = rounded(x, _mm512_mul_ps(lanes(h + i, m), inv));
        put(o + i, m, _mm512_mul_ps(lanes(wp + i, m), normed));
      }
    }
  });
}

// silu(x) = x * sigmoid(x) for the panel product's gated tasks (cpu_panel_wide_ops.py), the sigmoid from
// e = e^-|x| (at most 1: the range of the prompt kernel's exp_nonpositive, earlier in the same source):
// 1 / (1 + e) for x >= 0, e / (1 + e) below. Within a few ulp of silu_mul's std::exp (below -87, where the
// exponential is clamped, within 2e-36); NaN stays NaN (x is the last factor).
static inline __m512 silu_lanes(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(x)));
  const __m512 num = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), one, e);
  return _mm512_mul_ps(_mm512_div_ps(num, _mm512_add_ps(one, e)), x);
}
#endif

std::vector<torch::Tensor> add_rms_norm(torch::Tensor x, torch::Tensor residual, torch::Tensor weight, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.stride(1) == 1, "x must be [rows, n] with contiguous rows");
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "float32 or bfloat16 only");
  const bool has_res = residual.numel() > 0;
  if (has_res) TORCH_CHECK(residual.sizes() == x.sizes() && residual.stride(1) == 1 && residual.scalar_type() == dtype,
                           "residual must match x");
  weight = weight.to(dtype).contiguous();
  const int64_t rows = x.size(0), n = x.size(1);
  auto out = torch::empty({rows, n}, x.options());
  auto h = torch::empty({rows, n}, x.options());
  const float e = static_cast<float>(eps);
#if defined(CHATSTREAM_VECTOR_RMS_NORM)
  auto bits = [](const torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
  if (dtype == torch::kFloat32) {
    add_rms_norm_vector<float>(x.data_ptr<float>(), x.stride(0), has_res ? residual.data_ptr<float>() : nullptr,
                               has_res ? residual.stride(0) : 0, weight.data_ptr<float>(), out.data_ptr<float>(),
                               h.data_ptr<float>(), rows, n, e);
  } else {
    add_rms_norm_vector<uint16_t>(bits(x), x.stride(0), has_res ? bits(residual) : nullptr,
                                  has_res ? residual.stride(0) : 0, bits(weight), bits(out), bits(h), rows, n, e);
  }
#else
  if (dtype == torch::kFloat32) {
    add_rms_norm_impl<float>(x.data_ptr<float>(), x.stride(0), has_res ? residual.data_ptr<float>() : nullptr,
                             has_res ? residual.stride(0) : 0, weight.data_ptr<float>(), out.data_ptr<float>(),
                             h.data_ptr<float>(), rows, n, e);
  } else {
    auto b = [](const torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
    add_rms_norm_impl<uint16_t>(b(x), x.stride(0), has_res ? b(residual) : nullptr, has_res ? residual.stride(0) : 0,
                                b(weight), b(out), b(h), rows, n, e);
  }
#endif
  return {out, h};
}

// One head of `hd` values rotated with the row's cos/sin (rotate-half: pairs i and i + hd/2), as HF
// computes q * cos + rotate_half(q) * sin with each product and the sum rounded to the dtype.
template <typename T>
static inline void rotate(const T* src, const T* c, const T* s, int64_t hd, T* dst) {
  const int64_t half = hd / 2;
  for (int64_t i = 0; i < hd; ++i) {
    const float other = i < half ? -load(src, i + half) : load(src, i - half);
    const float a = round_to(src, load(src, i) * load(c, i));
    const float b = round_to(src, other * load(s, i));
    store(dst, i, a + b);
  }
}

template <typename T>
static void rope_and_cache_impl(const T* qkv, int64_t qs, const T* cp, const T* sp, T* kc, T* vc, const int64_t* slots,
                                T* qo, int64_t rows, int64_t H, int64_t KVH, int64_t hd, int64_t bs) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* row = qkv + r * qs;
      const T* c = cp + r * hd;
      const T* s = sp + r * hd;
      for (int64_t h = 0; h < H; ++h) rotate(row + h * hd, c, s, hd, qo + (r * H + h) * hd);
      const int64_t block = slots[r] / bs, offset = slots[r] % bs;
      for (int64_t h = 0; h < KVH; ++h) {
        const int64_t at = ((block * KVH + h) * bs + offset) * hd;
        rotate(row + (H + h) * hd, c, s, hd, kc + at);
        std::memcpy(vc + at, row + (H + KVH + h) * hd, hd * sizeof(T));
      }
    }
  });
}

torch::Tensor rope_and_cache(torch::Tensor qkv, torch::Tensor cos, torch::Tensor sin, torch::Tensor k_cache,
                             torch::Tensor v_cache, torch::Tensor slots, int64_t H, int64_t KVH, int64_t hd) {
  const auto dtype = k_cache.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "float32 or bfloat16 caches only");
  TORCH_CHECK(qkv.scalar_type() == dtype && v_cache.scalar_type() == dtype, "qkv and the caches must share a dtype");
  TORCH_CHECK(qkv.dim() == 2 && qkv.stride(1) == 1 && qkv.size(1) == (H + 2 * KVH) * hd, "qkv must be [T, (H+2KVH)*hd]");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.size(1) == KVH && k_cache.size(3) == hd,
              "caches must be contiguous [blocks, KVH, block_size, hd]");
  TORCH_CHECK(hd % 2 == 0, "head_dim must be even");
  const int64_t rows = qkv.size(0), bs = k_cache.size(2);
  cos = cos.to(dtype).contiguous();
  sin = sin.to(dtype).contiguous();
  TORCH_CHECK(cos.numel() == rows * hd && sin.numel() == rows * hd, "cos/sin must be [T, hd]");
  auto sl = slots.to(torch::kInt64).contiguous();
  TORCH_CHECK(sl.numel() == rows, "one slot per row");
  auto q = torch::empty({rows, H, hd}, qkv.options());
  if (dtype == torch::kFloat32) {
    rope_and_cache_impl<float>(qkv.data_ptr<float>(), qkv.stride(0), cos.data_ptr<float>(), sin.data_ptr<float>(),
                               k_cache.data_ptr<float>(), v_cache.data_ptr<float>(), sl.data_ptr<int64_t>(),
                               q.data_ptr<float>(), rows, H, KVH, hd, bs);
  } else {
    auto b = [](const torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
    rope_and_cache_impl<uint16_t>(b(qkv), qkv.stride(0), b(cos), b(sin), b(k_cache), b(v_cache),
                                  sl.data_ptr<int64_t>(), b(q), rows, H, KVH, hd, bs);
  }
  return q;
}

template <typename T>
static void silu_mul_impl(const T* gu, int64_t gs, T* op, int64_t rows, int64_t n) {
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* g = gu + r * gs;
      const T* u = g + n;
      T* o = op + r * n;
      for (int64_t i = 0; i < n; ++i) {
        const float x = load(g, i);
        // exp(-x) overflows below x = -88.7, and -ffast-math assumes no infinities (x / inf came out NaN):
        // from -88 on the result is below 1e-36, which the clamp keeps finite.
        const float act = round_to(g, x / (1.f + std::exp(std::min(-x, 88.f))));
        store(o, i, act * load(u, i));
      }
    }
  });
}

torch::Tensor silu_mul(torch::Tensor gate_up) {
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.stride(1) == 1 && gate_up.size(1) % 2 == 0,
              "gate_up must be [rows, 2 * n] with contiguous rows");
  const auto dtype = gate_up.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "float32 or bfloat16 only");
  const int64_t rows = gate_up.size(0), n = gate_up.size(1) / 2;
  auto out = torch::empty({rows, n}, gate_up.options());
  if (dtype == torch::kFloat32) {
    silu_mul_impl<float>(gate_up.data_ptr<float>(), gate_up.stride(0), out.data_ptr<float>(), rows, n);
  } else {
    auto b = [](const torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
    silu_mul_impl<uint16_t>(b(gate_up), gate_up.stride(0), b(out), rows, n);
  }
  return out;
}
"""

LAYER_OPS_FUNCTIONS = ("add_rms_norm", "rope_and_cache", "silu_mul")
