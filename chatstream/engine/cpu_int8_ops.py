"""The int8 weight product for a few rows on the CPU (C++ source, built with `cpu_attention.py`'s kernel).

One request at a time, a decode step is bound by reading the weights: each int8 weight byte is
read once and used for the step's few rows. `int8_matmul(x, q, scales)` computes
`y[m, o] = scales[o] * sum_i x[m, i] * q[o, i]` in fp32, four rows of `x` per pass over a weight
row (so a weight byte read serves four rows), the output channels split between the threads.
Activations stay in fp32 (bf16 inputs are widened), so the only rounding beyond fp32's is the
weights' own quantization. PyTorch's `_weight_int8pack_mm`, which the engine used before, takes
bf16 activations and read the weights at about half this kernel's rate on a 2-core Xeon.
"""

from __future__ import annotations

INT8_SOURCE = r"""
template <typename T>
static void int8_matmul_impl(const T* xp, int64_t xs, const int8_t* qp, const float* sp, T* op, int64_t M, int64_t N,
                             int64_t K) {
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> xf(M * K);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < K; ++i) xf[m * K + i] = load(xp + m * xs, i);
    for (int64_t o = begin; o < end; ++o) {
      const int8_t* w = qp + o * K;
      const float scale = sp[o];
      int64_t m = 0;
      for (; m + 4 <= M; m += 4) {
        const float *x0 = xf.data() + m * K, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
        #pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t i = 0; i < K; ++i) {
          const float wi = static_cast<float>(w[i]);
          s0 += x0[i] * wi; s1 += x1[i] * wi; s2 += x2[i] * wi; s3 += x3[i] * wi;
        }
        store(op + m * N, o, s0 * scale); store(op + (m + 1) * N, o, s1 * scale);
        store(op + (m + 2) * N, o, s2 * scale); store(op + (m + 3) * N, o, s3 * scale);
      }
      for (; m < M; ++m) {
        const float* x0 = xf.data() + m * K;
        float s0 = 0.f;
        #pragma omp simd reduction(+ : s0)
        for (int64_t i = 0; i < K; ++i) s0 += x0[i] * static_cast<float>(w[i]);
        store(op + m * N, o, s0 * scale);
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
