"""The panel product's many-row tasks and the gated gate/up product (C++ source, part of `cpu_panel_ops.py`'s).

A prompt chunk multiplies hundreds of rows by each weight matrix. Its panels then stay in the
cache while the rows go by, so the arithmetic, not the weights' trip from memory, sets the pace;
`panel_rows`' two panels by eight rows (16 accumulators, ten loads per sixteen products) leave the
multipliers waiting on loads. From 64 rows on, `panel_matmul` runs `wide_tasks`: a task is three
panels by a block of 96 rows, in tiles of 8 rows by 48 outputs (24 accumulators, each weight vector
used for 8 rows and each input for 3 panels), and a thread's consecutive tasks are the same panels'
next rows. Measured on SmolLM2's 30 layers' shapes (2-core Xeon, fp32, alternating, medians of 8
passes): 0.78x the time of two-panel tasks at 128 rows, 0.89x at 256, 0.87-0.91x at 512, 0.93x at
1024 (230-253 against 203-229 GFLOP/s at 512) while the machine was slow; 0.91x, 0.98x and
0.96-0.97x at 128, 256 and 512 rows while it was fast. Six-by-four and twelve-by-two tiles, and blocks of
48 or 192 rows, were no faster.

`gated_tasks` is the same for the fused `[gate; up]` weight of a gated MLP: each tile holds two
gate panels and the two up panels that go with them, and applies `silu(gate) * up` as it leaves
the registers, so the `[rows, 2I]` product is never written out and read back by `silu_mul`. It
needs the gate/up boundary on a panel boundary (`I` a multiple of 16) and the vector helpers of
`cpu_layer_ops.py` (AVX-512 BW and VL); elsewhere `panel_gated_matmul` is the two calls.
"""

from __future__ import annotations

PANEL_WIDE_SOURCE = r"""
static constexpr int64_t kWideRows = 64;    // from this many rows on, wide_tasks (below)
static constexpr int64_t kWidePanels = 3;   // a wide task's panels
static constexpr int kWideTile = 8;         // rows per register tile
static constexpr int64_t kWideBlock = 96;   // a wide task's rows
static constexpr int kGatedTile = 6;        // rows per register tile of the gated product

#if defined(__AVX512F__)
// out[m, 0:16 NP] for MR rows of x against NP consecutive panels: MR * NP accumulators, each weight
// vector used for MR rows and each broadcast input for NP panels (8 x 3: 24 of the 32 registers).
template <int MR, int NP, typename T>
static inline void wide_rows(const float* x, int64_t xs, const float* p0, int64_t K, T* o, int64_t os,
                             const __mmask16* masks) {
  __m512 a[MR][NP];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NP; ++j) a[m][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 w[NP];
    for (int j = 0; j < NP; ++j) w[j] = _mm512_loadu_ps(p0 + (j * K + k) * kPanel);
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_set1_ps(x[m * xs + k]);
      for (int j = 0; j < NP; ++j) a[m][j] = _mm512_fmadd_ps(xv, w[j], a[m][j]);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < NP; ++j) panel_put(o + m * os + j * kPanel, masks[j], a[m][j]);
}

template <int NP, typename T>
static void wide_block(const float* x, int64_t xs, const float* p0, int64_t K, T* o, int64_t os, int64_t rows,
                       const __mmask16* masks) {
  int64_t m = 0;
  for (; m + kWideTile <= rows; m += kWideTile) wide_rows<kWideTile, NP>(x + m * xs, xs, p0, K, o + m * os, os, masks);
  for (; m + 4 <= rows; m += 4) wide_rows<4, NP>(x + m * xs, xs, p0, K, o + m * os, os, masks);
  for (; m < rows; ++m) wide_rows<1, NP>(x + m * xs, xs, p0, K, o + m * os, os, masks);
}

// Many rows (a prompt chunk): the arithmetic, not the trip of the weights from memory, sets the pace, so a
// task is three panels by a block of rows, with more products per load than panel_rows' two panels. A
// thread's consecutive tasks are the same panels' next rows, which keeps those panels in its cache.
template <typename T>
static void wide_tasks(const float* xp, int64_t xs, const float* pp, int64_t M, int64_t K, int64_t N,
                       int64_t count, T* op) {
  const int64_t groups = (count + kWidePanels - 1) / kWidePanels, blocks = (M + kWideBlock - 1) / kWideBlock;
  parallel_tasks(groups * blocks, [&](auto&& next) {
    for (int64_t task; (task = next()) >= 0;) {
      const int64_t group = task / blocks, first = group * kWidePanels * kPanel, m = (task % blocks) * kWideBlock;
      const int64_t panels = std::min<int64_t>(kWidePanels, count - group * kWidePanels);
      const __mmask16 masks[kWidePanels] = {lanes_below(N - first), lanes_below(N - first - kPanel),
                                            lanes_below(N - first - 2 * kPanel)};
      const float* p0 = pp + group * kWidePanels * K * kPanel;
      const int64_t rows = std::min(kWideBlock, M - m);
      T* o = op + m * N + first;
      if (panels == 3) wide_block<3>(xp + m * xs, xs, p0, K, o, N, rows, masks);
      else if (panels == 2) wide_block<2>(xp + m * xs, xs, p0, K, o, N, rows, masks);
      else wide_block<1>(xp + m * xs, xs, p0, K, o, N, rows, masks);
    }
  });
}

#endif

#if defined(CHATSTREAM_PANEL_BF16_OUT)
#define CHATSTREAM_PANEL_GATED 1
// silu(x gate^T) * (x up^T) for MR rows against PAIRS gate panels and the up panels n / 16 panels further
// on (6 x 2 pairs: 24 accumulators). The activation is applied as the tile leaves the registers, so the
// [rows, 2n] product is never written and read back. It rounds where silu_mul after panel_matmul does
// (bf16: both products, the activation, their product); its activation is silu_lanes, a polynomial
// exponential within a few ulp of silu_mul's std::exp, so a bf16 result may be one bf16 step from theirs.
template <int MR, int PAIRS, typename T>
static inline void gated_rows(const float* x, int64_t xs, const float* g0, const float* u0, int64_t K, T* o,
                              int64_t os) {
  __m512 g[MR][PAIRS], u[MR][PAIRS];
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < PAIRS; ++j) g[m][j] = u[m][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 wg[PAIRS], wu[PAIRS];
    for (int j = 0; j < PAIRS; ++j) {
      wg[j] = _mm512_loadu_ps(g0 + (j * K + k) * kPanel);
      wu[j] = _mm512_loadu_ps(u0 + (j * K + k) * kPanel);
    }
    for (int m = 0; m < MR; ++m) {
      const __m512 xv = _mm512_set1_ps(x[m * xs + k]);
      for (int j = 0; j < PAIRS; ++j) {
        g[m][j] = _mm512_fmadd_ps(xv, wg[j], g[m][j]);
        u[m][j] = _mm512_fmadd_ps(xv, wu[j], u[m][j]);
      }
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int j = 0; j < PAIRS; ++j) {
      const __m512 act = rounded(o, silu_lanes(rounded(o, g[m][j])));
      panel_put(o + m * os + j * kPanel, static_cast<__mmask16>(0xFFFF), _mm512_mul_ps(act, rounded(o, u[m][j])));
    }
}

template <int PAIRS, typename T>
static void gated_block(const float* x, int64_t xs, const float* g0, const float* u0, int64_t K, T* o, int64_t os,
                        int64_t rows) {
  int64_t m = 0;
  for (; m + kGatedTile <= rows; m += kGatedTile)
    gated_rows<kGatedTile, PAIRS>(x + m * xs, xs, g0, u0, K, o + m * os, os);
  for (; m + 2 <= rows; m += 2) gated_rows<2, PAIRS>(x + m * xs, xs, g0, u0, K, o + m * os, os);
  for (; m < rows; ++m) gated_rows<1, PAIRS>(x + m * xs, xs, g0, u0, K, o + m * os, os);
}

// Tasks as wide_tasks': two gate panels (and their up panels) by a block of rows.
template <typename T>
static void gated_tasks(const float* xp, int64_t xs, const float* pp, int64_t M, int64_t K, int64_t n, T* op) {
  const int64_t gate_panels = n / kPanel, groups = (gate_panels + 1) / 2, blocks = (M + kWideBlock - 1) / kWideBlock;
  const float* up = pp + gate_panels * K * kPanel;
  parallel_tasks(groups * blocks, [&](auto&& next) {
    for (int64_t task; (task = next()) >= 0;) {
      const int64_t first = (task / blocks) * 2, m = (task % blocks) * kWideBlock;
      const int64_t rows = std::min(kWideBlock, M - m);
      const float* g0 = pp + first * K * kPanel;
      const float* u0 = up + first * K * kPanel;
      T* o = op + m * n + first * kPanel;
      if (first + 2 <= gate_panels) gated_block<2>(xp + m * xs, xs, g0, u0, K, o, n, rows);
      else gated_block<1>(xp + m * xs, xs, g0, u0, K, o, n, rows);
    }
  });
}
#endif
"""
