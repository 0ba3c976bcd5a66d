"""Prompt-chunk attention over the paged KV cache on CPUs with AVX-512 (C++ source, built with `cpu_attention.py`).

A prompt chunk's queries attend every key of their request up to their own position: the cached
prefix (an earlier turn of the conversation, an earlier chunk) and the chunk's own keys, causally.
The SDPA path copies the context's keys and values out of the blocks, builds a `[chunk, context]`
float mask and runs PyTorch's flash kernel, which reaches about a third of what the layer products
do on SmolLM2's heads (64 wide, three query heads per KV head). Here one task takes sixteen of the
chunk's tokens and one KV head, all the query heads of its group together, and walks the context
32 keys at a time straight from the blocks, with an online softmax:

- the task's queries are held transposed (`[head size, rows]`), so a key's scores for sixteen
  rows come out as one vector: the key is broadcast, never reduced horizontally;
- scores are kept as `[keys, rows]`, so the running maximum, the rescaling and the sums of the
  softmax are elementwise over those row vectors;
- the probability-weighted values are summed four rows (two for head size 128) at a time in
  registers, each value row loaded once for them;
- keys past the task's last token are never read; only the chunks that cross a token's own
  position are masked.

`prefill_vectorized(...)` returns false where the build lacks AVX-512 or the head size is not a
multiple of 16 up to 128, and the entry returns false for contexts past 2^24 tokens (positions are
compared as floats, exact below that); the caller then runs SDPA. Results equal SDPA's up to fp32
rounding (sums run in another order, and `exp_nonpositive` is a polynomial of about 2 ulp).
"""

from __future__ import annotations

PREFILL_FUNCTIONS = ["paged_prefill_attention", "prefill_kernel_available"]

PREFILL_SOURCE = r"""
#include <algorithm>

#if defined(__AVX512F__)
// Follows cpu_decode_avx512.py in the same source: its load16 / store16 are used here.
constexpr int64_t PF_TOKENS = 16;  // a task's query tokens
constexpr int64_t PF_KEYS = 32;    // keys per pass over the context
constexpr float PF_MASKED = -1e30f;  // finite: the build uses -ffast-math, which assumes no infinities

// e^x for x <= 0: n = round(x / ln 2), r = x - n ln 2 in two parts (Cody-Waite), e^r by its Taylor
// polynomial to r^6 (|r| <= ln 2 / 2: error about 1e-7), scaled by 2^n.
static inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.f / 720.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// st[key j][row] = sum_d kf[j][d] * qt[d][row] for NK keys from j0 and NV row vectors from v0.
template <int NK, int NV>
static inline void score_tile(const float* qt, const float* kf, float* st, int64_t rows, int64_t hd, int64_t j0,
                              int64_t v0) {
  __m512 acc[NK][NV];
  for (int k = 0; k < NK; ++k)
    for (int v = 0; v < NV; ++v) acc[k][v] = _mm512_setzero_ps();
  for (int64_t d = 0; d < hd; ++d) {
    __m512 q[NV];
    for (int v = 0; v < NV; ++v) q[v] = _mm512_loadu_ps(qt + d * rows + (v0 + v) * 16);
    for (int k = 0; k < NK; ++k) {
      const __m512 key = _mm512_set1_ps(kf[(j0 + k) * hd + d]);
      for (int v = 0; v < NV; ++v) acc[k][v] = _mm512_fmadd_ps(key, q[v], acc[k][v]);
    }
  }
  for (int k = 0; k < NK; ++k)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(st + (j0 + k) * rows + (v0 + v) * 16, acc[k][v]);
}

template <int NK>
static inline void score_keys(const float* qt, const float* kf, float* st, int64_t rows, int64_t hd, int64_t j0) {
  const int64_t nv = rows / 16;
  int64_t v = 0;
  for (; v + 3 <= nv; v += 3) score_tile<NK, 3>(qt, kf, st, rows, hd, j0, v);
  if (nv - v == 2) score_tile<NK, 2>(qt, kf, st, rows, hd, j0, v);
  else if (nv - v == 1) score_tile<NK, 1>(qt, kf, st, rows, hd, j0, v);
}

// o[row] = o[row] * corr[row] + sum_j pt[j][row] * v_j for RB rows from r0 (C vectors of 16 per row).
template <typename T, int C, int RB>
static inline void weigh_values(float* o, const float* corr, const float* pt, const T* const* vrow, int64_t nk,
                                int64_t rows, int64_t r0) {
  constexpr int64_t hd = 16 * C;
  __m512 acc[RB][C];
  for (int r = 0; r < RB; ++r) {
    const __m512 c = _mm512_set1_ps(corr[r0 + r]);
    for (int i = 0; i < C; ++i) acc[r][i] = _mm512_mul_ps(_mm512_loadu_ps(o + (r0 + r) * hd + i * 16), c);
  }
  for (int64_t j = 0; j < nk; ++j) {
    __m512 v[C];
    for (int i = 0; i < C; ++i) v[i] = load16(vrow[j] + i * 16);
    for (int r = 0; r < RB; ++r) {
      const __m512 p = _mm512_set1_ps(pt[j * rows + r0 + r]);
      for (int i = 0; i < C; ++i) acc[r][i] = _mm512_fmadd_ps(p, v[i], acc[r][i]);
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int i = 0; i < C; ++i) _mm512_storeu_ps(o + (r0 + r) * hd + i * 16, acc[r][i]);
}

// One step's prompt chunks: chunk p's tokens are q rows [starts[p], starts[p] + lens[p]), at positions
// computed[p] onwards; its context is read through tables[p]. q, out: [T, H, hd]; caches [N, KVH, bs, hd].
template <typename T, int C>
static void prefill_heads(const T* qp, T* op, const T* kp, const T* vp, const int64_t* tables, const int64_t* starts,
                          const int64_t* lens, const int64_t* computed, int64_t P, int64_t max_blocks, int64_t H,
                          int64_t KVH, int64_t bs, float sc) {
  constexpr int64_t hd = 16 * C;
  constexpr int RB = C <= 4 ? 4 : 2;  // rows whose sums fit the registers with a value row
  const int64_t G = H / KVH, rows = PF_TOKENS * G;  // rows: (token, query head) pairs, a multiple of 16
  std::vector<int64_t> first_task(P + 1, 0);  // tasks: each chunk's token tiles times its KV heads
  for (int64_t p = 0; p < P; ++p) first_task[p + 1] = first_task[p] + (lens[p] + PF_TOKENS - 1) / PF_TOKENS * KVH;
  parallel_tasks(first_task[P], [&](auto&& next) {
    std::vector<float> qt(hd * rows), kf(PF_KEYS * hd), st(PF_KEYS * rows), o(rows * hd);
    std::vector<float> corr(rows), mx(rows), sum(rows), last(rows);
    for (int64_t task; (task = next()) >= 0;) {
      const int64_t p = std::upper_bound(first_task.begin(), first_task.end(), task) - first_task.begin() - 1;
      // A KV head's tiles are consecutive tasks, so the context they all read stays in the thread's cache.
      const int64_t tiles = (lens[p] + PF_TOKENS - 1) / PF_TOKENS;
      const int64_t kvh = (task - first_task[p]) / tiles, tile = (task - first_task[p]) % tiles;
      const int64_t i0 = tile * PF_TOKENS, ntok = std::min(PF_TOKENS, lens[p] - i0), done = computed[p];
      const int64_t* table = tables + p * max_blocks;
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = r / G, g = r % G;
        if (i < ntok) {
          const T* src = qp + ((starts[p] + i0 + i) * H + kvh * G + g) * hd;
          for (int64_t d = 0; d < hd; ++d) qt[d * rows + r] = load(src, d) * sc;
          last[r] = static_cast<float>(done + i0 + i);  // the last key this row sees
        } else {  // past the chunk's end: a padding row that sees nothing and is never written out
          for (int64_t d = 0; d < hd; ++d) qt[d * rows + r] = 0.f;
          last[r] = -1.f;
        }
        mx[r] = PF_MASKED;
        sum[r] = 0.f;
      }
      std::fill(o.begin(), o.end(), 0.f);
      const int64_t end = done + i0 + ntok;  // keys [0, end) cover every row of the task
      for (int64_t k0 = 0; k0 < end; k0 += PF_KEYS) {
        const int64_t nk = std::min(PF_KEYS, end - k0);
        const T* vrow[PF_KEYS];
        for (int64_t j = 0; j < nk; ++j) {
          const int64_t pos = k0 + j, at = ((table[pos / bs] * KVH + kvh) * bs + pos % bs) * hd;
          vrow[j] = vp + at;
          for (int i = 0; i < C; ++i) _mm512_storeu_ps(kf.data() + j * hd + i * 16, load16(kp + at + i * 16));
        }
        for (int64_t j = nk; j < (nk + 3) / 4 * 4; ++j) std::fill(kf.data() + j * hd, kf.data() + (j + 1) * hd, 0.f);
        for (int64_t j = 0; j < nk; j += 4) score_keys<4>(qt.data(), kf.data(), st.data(), rows, hd, j);
        // The online softmax, sixteen rows per vector: new maxima, the old sums' rescaling, e^(s - max).
        for (int64_t r = 0; r < rows; r += 16) {
          const __m512 lim = _mm512_loadu_ps(last.data() + r), m_old = _mm512_loadu_ps(mx.data() + r);
          __m512 m = m_old;
          for (int64_t j = 0; j < nk; ++j) {
            const __mmask16 seen = _mm512_cmp_ps_mask(_mm512_set1_ps(static_cast<float>(k0 + j)), lim, _CMP_LE_OQ);
            m = _mm512_mask_max_ps(m, seen, m, _mm512_loadu_ps(st.data() + j * rows + r));
          }
          const __m512 c = exp_nonpositive(_mm512_sub_ps(m_old, m));
          __m512 s = _mm512_mul_ps(_mm512_loadu_ps(sum.data() + r), c);
          for (int64_t j = 0; j < nk; ++j) {
            const __mmask16 seen = _mm512_cmp_ps_mask(_mm512_set1_ps(static_cast<float>(k0 + j)), lim, _CMP_LE_OQ);
            float* sj = st.data() + j * rows + r;
            const __m512 e = _mm512_maskz_mov_ps(seen, exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(sj), m)));
            _mm512_storeu_ps(sj, e);
            s = _mm512_add_ps(s, e);
          }
          _mm512_storeu_ps(mx.data() + r, m);
          _mm512_storeu_ps(sum.data() + r, s);
          _mm512_storeu_ps(corr.data() + r, c);
        }
        for (int64_t r = 0; r < rows; r += RB)
          weigh_values<T, C, RB>(o.data(), corr.data(), st.data(), vrow, nk, rows, r);
      }
      for (int64_t r = 0; r < ntok * G; ++r) {
        const int64_t i = r / G, g = r % G;
        T* dst = op + ((starts[p] + i0 + i) * H + kvh * G + g) * hd;
        const __m512 inv = _mm512_set1_ps(1.f / sum[r]);
        for (int c = 0; c < C; ++c)
          store16(dst + c * 16, _mm512_mul_ps(_mm512_loadu_ps(o.data() + r * hd + c * 16), inv));
      }
    }
  });
}
#endif

template <typename T>
static bool prefill_vectorized(const T* qp, T* op, const T* kp, const T* vp, const int64_t* tables,
                               const int64_t* starts, const int64_t* lens, const int64_t* computed, int64_t P,
                               int64_t max_blocks, int64_t H, int64_t hd, int64_t KVH, int64_t bs, float sc) {
#if defined(__AVX512F__)
  switch (hd) {
#define PF_HEAD_SIZE(C) \
    case 16 * C: prefill_heads<T, C>(qp, op, kp, vp, tables, starts, lens, computed, P, max_blocks, H, KVH, bs, sc); \
    return true;
    PF_HEAD_SIZE(1) PF_HEAD_SIZE(2) PF_HEAD_SIZE(3) PF_HEAD_SIZE(4)
    PF_HEAD_SIZE(5) PF_HEAD_SIZE(6) PF_HEAD_SIZE(7) PF_HEAD_SIZE(8)
#undef PF_HEAD_SIZE
    default: return false;
  }
#else
  return false;
#endif
}

bool prefill_kernel_available() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

// Writes the prompt chunks' rows of `out`; false (nothing written) where this build has no vector path for
// the shape, and the caller attends with SDPA instead. Every index is checked against the tensors it reads.
bool paged_prefill_attention(torch::Tensor q, torch::Tensor out, torch::Tensor k_cache, torch::Tensor v_cache,
                             torch::Tensor block_tables, torch::Tensor starts, torch::Tensor lens,
                             torch::Tensor computed, double scale) {
  const auto dtype = k_cache.scalar_type();
  TORCH_CHECK(dtype == torch::kFloat32 || dtype == torch::kBFloat16, "float32 or bfloat16 caches only");
  TORCH_CHECK(q.scalar_type() == dtype && out.scalar_type() == dtype && v_cache.scalar_type() == dtype,
              "q, out, k and v must share a dtype");
  TORCH_CHECK(q.dim() == 3 && q.is_contiguous() && out.sizes() == q.sizes() && out.is_contiguous(),
              "q and out must be contiguous [T, H, head_size]");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.sizes() == v_cache.sizes(),
              "k and v caches must be contiguous and alike");
  auto tables = block_tables.to(torch::kInt64).contiguous();
  auto st = starts.to(torch::kInt64).contiguous(), ln = lens.to(torch::kInt64).contiguous();
  auto cp = computed.to(torch::kInt64).contiguous();
  const int64_t T_ = q.size(0), H = q.size(1), hd = q.size(2), P = st.size(0);
  const int64_t N = k_cache.size(0), KVH = k_cache.size(1), bs = k_cache.size(2), max_blocks = tables.size(1);
  TORCH_CHECK(k_cache.size(3) == hd && KVH > 0 && H % KVH == 0, "head sizes or head counts do not match");
  TORCH_CHECK(tables.dim() == 2 && tables.size(0) == P && ln.size(0) == P && cp.size(0) == P, "one row per chunk");
  const int64_t *tp = tables.data_ptr<int64_t>(), *sp = st.data_ptr<int64_t>(), *lp = ln.data_ptr<int64_t>();
  const int64_t* cpp = cp.data_ptr<int64_t>();
  for (int64_t p = 0; p < P; ++p) {
    TORCH_CHECK(lp[p] > 0 && sp[p] >= 0 && sp[p] + lp[p] <= T_ && cpp[p] >= 0, "chunk ", p, " out of range");
    const int64_t needed = (cpp[p] + lp[p] + bs - 1) / bs;
    TORCH_CHECK(needed <= max_blocks, "chunk ", p, "'s context needs more blocks than its table has");
    for (int64_t b = 0; b < needed; ++b)
      TORCH_CHECK(tp[p * max_blocks + b] >= 0 && tp[p * max_blocks + b] < N, "chunk ", p, ": block out of range");
  }
  for (int64_t p = 0; p < P; ++p)  // positions are compared as floats, exact below 2^24: longer contexts go to SDPA
    if (cpp[p] + lp[p] > (int64_t(1) << 24)) return false;
  const float sc = static_cast<float>(scale);
  pybind11::gil_scoped_release no_gil;  // the event loop runs while the engine attends
  if (dtype == torch::kFloat32)
    return prefill_vectorized(q.data_ptr<float>(), out.data_ptr<float>(), k_cache.data_ptr<float>(),
                              v_cache.data_ptr<float>(), tp, sp, lp, cpp, P, max_blocks, H, hd, KVH, bs, sc);
  auto bits = [](torch::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); };
  return prefill_vectorized(bits(q), bits(out), bits(k_cache), bits(v_cache), tp, sp, lp, cpp, P, max_blocks, H,
                            hd, KVH, bs, sc);
}
"""
