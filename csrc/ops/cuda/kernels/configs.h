// The kernels' launch configurations as plain structs (no device code) and the layout
// constants that the planner and the kernels share. The planner (planner.cuh) fills every
// field; the plans of ../adaptive_conv2d_kernels.cuh carry the structs to the launchers
// (launchers.cuh), which pass them to the kernels as they are. Host-only code (the planner,
// the torch glue) includes this header without any kernel.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <tuple>

namespace adaptive_conv_ext {
namespace cuda {

constexpr int kThreads = 256;                 // threads per block, and the most output pixels per tile
constexpr int64_t kDefaultSmem = 48 * 1024;  // shared memory a block gets without opting in

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t align_up(int64_t v, int64_t a) { return ceil_div(v, a) * a; }

// m = div_magic(d) makes r / d one multiply-high in the kernels (common.cuh: div_by_magic).
__host__ __device__ constexpr unsigned div_magic(unsigned d) {
  return static_cast<unsigned>(((1ull << 31) + d - 1) / d);
}

// Columns of dQ a thread of the scalar grad_weight kernel owns in its reduction phase (the
// kernel's AW) for a k x k kernel: 9, 25, 28 (7x7 in two column groups); 8 for the generic
// kernel (k = 0).
constexpr int dw_columns(int k) { return k == 3 ? 9 : k == 5 ? 25 : k == 7 ? 28 : 8; }

// --- tensor-core kernels (forward_mma.cuh, backward_mma.cuh) -------------------------------
constexpr int kMmaWarps = kThreads / 32;
constexpr int kMmaPixels = kMmaWarps * 16;  // output pixels per block (one m16 tile per warp)
constexpr int kMmaOct = 8;                  // most output channels per block (register arrays)
constexpr int kMmaMaxKs = 4;                // K = T + 1 <= 64: kernels up to 7x7 (T = 49)

__host__ __device__ constexpr int mma_k(int ks) { return 16 * ks; }       // padded K (= padded N)
__host__ __device__ constexpr int mma_row(int ks) { return 16 * ks + 8; }  // Q row stride, elements

// Rows of the packed B operands per (group, output-channel block, input channel): oct
// matrices of Tr rows (Tr = T - 1 with the shared last-tap tile, else T), then the shared
// tile's 8 rows (output channel j, tap T - 1). Each row is 16 KS elements (K).
__host__ __device__ constexpr int mma_q_rows(int oct, int T, bool shared) {
  return shared ? oct * (T - 1) + 8 : oct * T;
}
// Shared memory of one staged input channel's B operands, elements.
__host__ __device__ constexpr int mma_q_chunk(int ks, int oct, bool shared) {
  return (oct * mma_k(ks) + (shared ? 8 : 0)) * mma_row(ks);
}

// The gradients a fused backward kernel produces (template argument kGrads, a bit set).
enum BwdGrads : int { kBwdInput = 1, kBwdWeight = 2, kBwdBoth = 3 };

// The tensor-core kernel variants that are compiled, the one list the planner and both
// kernel pickers read: K = 16 KS, and Tail >= 0 for the odd square kernels (T = 8 Tail + 1:
// 1x1, 3x3, 5x5, 7x7, compile-time tile counts), Tail = -1 for any T.
template <int KS, int Tail>
struct MmaVariant {
  static constexpr int ks = KS, tail = Tail;
};
using MmaVariants = std::tuple<MmaVariant<1, 0>, MmaVariant<1, 1>, MmaVariant<2, 3>, MmaVariant<4, 6>,
                               MmaVariant<1, -1>, MmaVariant<2, -1>, MmaVariant<3, -1>, MmaVariant<4, -1>>;

// Calls f(MmaVariant<KS, Tail>{}) for the variant (ks, tail); false when it is not compiled.
template <typename F>
bool visit_mma_variant(int ks, int tail, F&& f) {
  return std::apply([&](auto... v) { return ((v.ks == ks && v.tail == tail ? (f(v), true) : false) || ...); },
                    MmaVariants{});
}
inline bool has_mma_variant(int ks, int tail) {
  return visit_mma_variant(ks, tail, [](auto) {});
}

// --- configurations, as the kernels read them (32-bit: the planner checks every value fits) --
struct Geom {
  int N, C, H, W, O, G, Cg, Og;
  int kH, kW, T, Tp;
  int sH, sW, pH, pW, dH, dW;
  int Ho, Wo;
};

// The tile fields (toh .. tiles_w) of every configuration are set by the planner's set_tile.
struct FwdCfg {
  int toh, tow, P, bh, bw, box, tiles_h, tiles_w;
  int oct, n_ot, cch, tt;
  int off_beta, off_box, off_y;
  int q_rows, q_shared;  // tensor-core kernel: packed B rows per channel, shared last-tap tile
  unsigned q_rows_m, q_tr_m;  // div_magic of q_rows and of the rows per output channel
  long long items;
};

struct DxCfg {
  int toh, tow, P, bh, bw, box, tiles_h, tiles_w;
  int oq, tt;
  int off_beta, off_box, off_dbox, off_dxt, off_dxp;
  int mode;  // DxMode
  long long items;
};

struct DwCfg {
  int toh, tow, P, bh, bw, box, tiles_h, tiles_w;
  int oq, n_ot, tt, n_tc, ncg, jobs, ks, rs;
  int off_beta, off_box, off_xcol, off_ds;
  int mode;  // DwMode
  long long splits, work_items, items;
};

struct BwdMmaCfg {
  int toh, tow, P, Pp, bh, bw, box, tiles_h, tiles_w;  // Pp: P rounded up to 16 (m16 tiles)
  int oct, rounds, splits, work_items;
  int off_q, off_col, off_dl, off_ds;  // bytes from the start of shared memory (dQ accumulator at 0)
  int dx_mode, dw_mode;        // DxMode, DwMode
  long long items;             // C * splits
};

}  // namespace cuda
}  // namespace adaptive_conv_ext
