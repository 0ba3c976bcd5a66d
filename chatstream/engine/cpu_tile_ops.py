"""The bf16 weight product on CPUs with AMX (C++ source, built with `cpu_attention.py`'s kernel).

A decode step multiplies a few dozen rows by every weight matrix. In bf16 oneDNN's prepacked
product runs those on AMX too, but on a small model's matrices (576 wide for SmolLM2) its per-call
work and its blocking for large products leave it well short of the rate at which the weights can
be read. This kernel is the plainest use of the tiles:
- `pack_tiles(w)` stores `w [N, K]` as panels of 16 output channels in AMX's pair-interleaved
  layout, `[ceil(N / 16), K / 2, 16, 2]`: 16 consecutive pairs of one panel are one 1 KiB B tile;
- `tile_matmul(x, tiles, N)` computes `x @ w.T`: each task takes two panels (32 outputs) and walks
  the rows of `x` 32 at a time with four accumulator tiles (2 x 2 blocks of 16 x 16), loading two
  16-row A tiles of `x` and two B tiles per 32 inputs; rows are taken 256 at a time so that the
  A tiles stay in the core's cache while every task reads them.
Measured on SmolLM2's 30 layers (2-core Xeon with AMX, bf16, the products alone, one after another):
8.6-9.3 ms against oneDNN's 14.8-15.7 ms at 32 rows, 7.7-9.3 against 11.9-13.1 ms at one row, 60-78
against 73-100 ms at 512 rows; the LM head (49152 x 576) 1.6 against 2.0 ms at 32 rows. In a running
engine, where attention and the other layers' work push the weights out of the cache between uses, the
gain is smaller. oneDNN is ahead from about 2,048 rows on (194-202 against 250-300 ms), which the engine
reaches only with `max_num_batched_tokens` raised that far.
Each output is the fp32 sum of the bf16 products over the inputs in order, rounded once to bf16:
the results equal oneDNN's bit for bit in our tests.
Compiled only where the compiler targets AMX (`-march=native` on such a CPU); the kernel asks
Linux for the tile state once per process (`arch_prctl`), and where either fails
`tile_kernel_available()` is false and bf16 weights keep oneDNN's prepacked product.
"""

from __future__ import annotations

import torch

TILE_PANEL = 16  # output channels per panel: the 16 columns of one bf16 B tile
TILE_DEPTH = 32  # inputs per tile step: a B tile holds 16 pairs; the input width must be a multiple


def pack_tiles(weight: torch.Tensor) -> torch.Tensor:
    """`weight [N, K]` (bf16, K a multiple of 32) as `[ceil(N / 16), K / 2, 16, 2]`, written in place: no padded
    temporary, so packing a large LM head never holds a third copy."""
    out_features, in_features = weight.shape
    if in_features % TILE_DEPTH:
        raise ValueError(f"the input width must be a multiple of {TILE_DEPTH}, got {in_features}")
    weight = weight.to(torch.bfloat16)
    full, rest = divmod(out_features, TILE_PANEL)
    pairs = in_features // 2
    tiles = torch.empty(full + (rest > 0), pairs, TILE_PANEL, 2, dtype=torch.bfloat16)
    if full:
        tiles[:full].copy_(weight[: full * TILE_PANEL].reshape(full, TILE_PANEL, pairs, 2).transpose(1, 2))
    if rest:
        tiles[full].zero_()
        tiles[full, :, :rest].copy_(weight[full * TILE_PANEL:].reshape(rest, pairs, 2).transpose(0, 1))
    return tiles


def unpack_tiles(tiles: torch.Tensor, out_features: int) -> torch.Tensor:
    """The `[N, K]` weight `pack_tiles` was given, exactly."""
    count, pairs = tiles.shape[0], tiles.shape[1]
    return tiles.transpose(1, 2).reshape(count * TILE_PANEL, pairs * 2)[:out_features].contiguous()


def tile_rows(tiles: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`W[ids]` read out of the tiles (the lookups of an embedding tied to this weight), bit for bit."""
    pairs = tiles.shape[1]
    flat = ids.reshape(-1)
    return tiles[flat // TILE_PANEL, :, flat % TILE_PANEL].reshape(*ids.shape, pairs * 2)


TILE_FUNCTIONS = ["tile_kernel_available", "tile_matmul"]

TILE_SOURCE = r"""
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__linux__)
#define CHATSTREAM_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace {
constexpr int64_t kTilePanel = 16;
constexpr int64_t kTileDepth = 32;
constexpr int64_t kRowChunk = 256;  // rows of x per pass over the tasks (keeps its A tiles in cache)

// LDTILECFG's 64-byte operand: palette 1, then bytes per row and rows of each tile register.
struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Linux hands a process the AMX tile state only on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
// without it the first tile instruction kills the process. Asked once; oneDNN asks the same.
bool tile_state_granted() {
  static const bool granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return granted;
}
}  // namespace
#endif

bool tile_kernel_available() {
#if defined(CHATSTREAM_AMX)
  return tile_state_granted();
#else
  return false;
#endif
}

torch::Tensor tile_matmul(torch::Tensor x, torch::Tensor tiles, int64_t N) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kBFloat16, "x must be bfloat16 [rows, in]");
  TORCH_CHECK(tiles.dim() == 4 && tiles.is_contiguous() && tiles.scalar_type() == torch::kBFloat16 &&
              tiles.size(2) == 16 && tiles.size(3) == 2 && tiles.size(1) * 2 == x.size(1) && x.size(1) % 32 == 0 &&
              tiles.size(0) * 16 >= N && N > (tiles.size(0) - 1) * 16,
              "tiles must come from pack_tiles of an [N, in] weight");
  const int64_t M = x.size(0), K = x.size(1), count = tiles.size(0);
  auto out = torch::empty({M, N}, x.options());
  if (M == 0) return out;
#if defined(CHATSTREAM_AMX)
  TORCH_CHECK(tile_state_granted(), "this process has no AMX tile state");
  // A tiles read 16 rows at a time: pad x with zero rows to a multiple of 16 (none for 16, 32, 48... rows).
  const int64_t Mp = (M + 15) / 16 * 16;
  torch::Tensor a = x;
  if (Mp != M || x.stride(1) != 1 || x.stride(0) != K) {
    a = torch::zeros({Mp, K}, x.options());
    a.narrow(0, 0, M).copy_(x);
  }
  const uint16_t* xp = reinterpret_cast<const uint16_t*>(a.data_ptr<at::BFloat16>());
  const uint16_t* tp = reinterpret_cast<const uint16_t*>(tiles.data_ptr<at::BFloat16>());
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const int64_t panel_elems = K * kTilePanel;  // one panel: K/2 pairs x 16 outputs x 2
  pybind11::gil_scoped_release no_gil;  // the event loop runs while the engine multiplies
  for (int64_t r0 = 0; r0 < Mp; r0 += kRowChunk) {
    const int64_t r_end = std::min(Mp, r0 + kRowChunk);
    at::parallel_for(0, (count + 1) / 2, 1, [&](int64_t begin, int64_t end) {
      TileConfig cfg{};  // tile registers are per thread: each worker loads the layout itself
      cfg.palette = 1;
      for (int t = 0; t < 8; ++t) { cfg.colsb[t] = 64; cfg.rows[t] = 16; }
      _tile_loadconfig(&cfg);
      alignas(64) float c[32][32];
      for (int64_t task = begin; task < end; ++task) {
        const int64_t first = task * 2 * kTilePanel;
        const bool two = first + kTilePanel < N;
        const uint16_t* b0 = tp + task * 2 * panel_elems;
        const uint16_t* b1 = two ? b0 + panel_elems : b0;
        const int64_t cols = std::min<int64_t>(two ? 32 : 16, N - first);
        const __mmask32 mask = cols >= 32 ? 0xFFFFFFFFu : ((1u << cols) - 1u);
        for (int64_t m0 = r0; m0 < r_end; m0 += 32) {
          const bool lower = m0 + 16 < r_end;  // a second block of 16 rows
          const uint16_t* a0 = xp + m0 * K;
          _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
          for (int64_t k = 0; k < K; k += kTileDepth) {
            _tile_loadd(4, a0 + k, K * 2);
            _tile_loadd(6, b0 + k * kTilePanel, 64);
            _tile_loadd(7, b1 + k * kTilePanel, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            if (lower) {
              _tile_loadd(5, a0 + 16 * K + k, K * 2);
              _tile_dpbf16ps(2, 5, 6);
              _tile_dpbf16ps(3, 5, 7);
            }
          }
          _tile_stored(0, &c[0][0], 128);
          _tile_stored(1, &c[0][16], 128);
          if (lower) {
            _tile_stored(2, &c[16][0], 128);
            _tile_stored(3, &c[16][16], 128);
          }
          const int64_t rows = std::min<int64_t>(32, M - m0);
          for (int64_t r = 0; r < rows; ++r) {
            const __m512bh both = _mm512_cvtne2ps_pbh(_mm512_load_ps(&c[r][16]), _mm512_load_ps(&c[r][0]));
            _mm512_mask_storeu_epi16(op + (m0 + r) * N + first, mask, reinterpret_cast<__m512i>(both));
          }
        }
      }
      _tile_release();
    });
  }
#else
  TORCH_CHECK(false, "the tile kernel needs AMX");
#endif
  return out;
}
"""
