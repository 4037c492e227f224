// Fused CPU kernels for adaptive convolution (SPEC section 1). Included by one
// .cpp per instruction set, which defines CPU_CAPABILITY (DEFAULT, AVX2, AVX512)
// first and is compiled with that instruction set's flags; simd/vec.h picks its
// vector types from those flags. Threads come from torch's pool through parallel.h, so
// this file includes no libtorch header and needs no -fopenmp.
//
// Layout of the work: output pixels are taken kTile at a time (flattened over
// Ho*Wo, vectorised along that axis). For a tile and one input channel the
// zero-padded patch X[tap][pixel] is gathered once and reused by every output
// channel of the group. sigma and K live only in registers (forward) or in one
// tile-sized scratch row (backward): nothing of size N*O*(C/g)*T*Ho*Wo exists.
#pragma once

#include <algorithm>
#include <type_traits>
#include <cstring>
#include <vector>

#include "adaptive_conv2d_cpu_kernel.h"
#include "parallel.h"
#include "simd/vec.h"

// The flags of the including file must select the vector build its namespace names.
#if defined(CPU_CAPABILITY_AVX512) && !defined(ADAPTIVE_CONV_SIMD_AVX512)
#error "the AVX512 kernels must be compiled with -mavx512f (and -mavx512bw -mavx512vl -mavx512dq -mfma)"
#elif defined(CPU_CAPABILITY_AVX2) && !defined(ADAPTIVE_CONV_SIMD_AVX2)
#error "the AVX2 kernels must be compiled with -mavx2 -mfma (and not -mavx512f)"
#elif !defined(CPU_CAPABILITY_AVX512) && !defined(CPU_CAPABILITY_AVX2) && !defined(ADAPTIVE_CONV_SIMD_PORTABLE)
#error "the portable kernels must be compiled without -mavx2/-mfma/-mavx512f"
#endif

namespace adaptive_conv_ext::cpu::CPU_CAPABILITY {
namespace {

using simd::kVecRegs;

// Output pixels per tile: a multiple of every vector width (16 floats on AVX-512).
constexpr int64_t kTile = 64;

// Runs of a tile are a few dozen elements: vector loops with a scalar tail instead of
// memmove calls (their call and dispatch cost exceeded the copying at these sizes).
template <typename T>
inline void copy_short(T* dst, const T* src, int64_t n) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  int64_t i = 0;
  for (; i + V <= n; i += V) Vec::loadu(src + i).store(dst + i);
  for (; i < n; ++i) dst[i] = src[i];
}

// x[i] *= scale (nothing where scale is 1)
template <typename T>
inline void scale_short(T* x, int64_t n, T scale) {
  if (scale == T(1)) return;
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  int64_t i = 0;
  for (; i + V <= n; i += V) (Vec::loadu(x + i) * Vec(scale)).store(x + i);
  for (; i < n; ++i) x[i] *= scale;
}

// dst[i * stride] += src[i]
template <typename T>
inline void add_short(T* dst, int64_t stride, const T* src, int64_t n) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  int64_t i = 0;
  if (stride == 1)
    for (; i + V <= n; i += V) (Vec::loadu(dst + i) + Vec::loadu(src + i)).store(dst + i);
  for (; i < n; ++i) dst[i * stride] += src[i];
}

// A tile covers output pixels [p0, p0 + count) of the flattened Ho*Wo grid: a few
// runs along output rows. Along a run the taps of one kernel column (a, b) are
// equally spaced in one input row, so gather and scatter work run by run, with
// the zero padding cut off at both ends instead of tested pixel by pixel.

// The runs of a tile, found once per tile (the tap loops below reuse them: integer
// divisions per tap and run were a visible share of a depthwise tile's time).
struct TileRuns {
  struct Run {
    int64_t p, len, i, j0;  // pixels [p, p + len) lie in output row i from column j0
  };
  Run run[kTile];  // at most one run per pixel (Wo = 1)
  int64_t size = 0;

  TileRuns(const AdaptiveConvShape& s, int64_t p0, int64_t count) {
    for (int64_t p = 0; p < count;) {
      const int64_t i = (p0 + p) / s.Wo, j0 = (p0 + p) % s.Wo;
      const int64_t len = std::min(s.Wo - j0, count - p);
      run[size++] = {p, len, i, j0};
      p += len;
    }
  }
};

// fn(p, len, ih, iw, lo, hi) for each run [p, p + len) of the tile and tap (a, b):
// pixel p + jj reads input (ih, iw + jj * sW); only jj in [lo, hi) lies inside the
// image (ih itself may be outside: then lo == hi).
template <typename Fn>
inline void for_each_tap_run(const AdaptiveConvShape& s, const TileRuns& runs, int64_t a, int64_t b,
                             Fn&& fn) {
  for (int64_t r = 0; r < runs.size; ++r) {
    const TileRuns::Run& run = runs.run[r];
    const int64_t ih = run.i * s.sH - s.pH + a * s.dH, iw = run.j0 * s.sW - s.pW + b * s.dW;
    int64_t lo = 0, hi = 0;
    if (ih >= 0 && ih < s.H) {
      if (s.sW == 1) {
        lo = std::max<int64_t>(-iw, 0);
        hi = std::max<int64_t>(s.W - iw, 0);
      } else {
        lo = iw >= 0 ? 0 : (-iw + s.sW - 1) / s.sW;           // first jj with iw + jj*sW >= 0
        hi = iw > s.W - 1 ? 0 : (s.W - 1 - iw) / s.sW + 1;    // past the last jj with iw + jj*sW < W
      }
      lo = std::min(lo, run.len);
      hi = std::min(std::max(hi, lo), run.len);
    }
    fn(run.p, run.len, ih, iw, lo, hi);
  }
}

// patch[t * kTile + p] = X[tap t] of pixel p (zero padding; zero for p >= count).
template <typename T>
void gather_patch(const AdaptiveConvShape& s, int64_t p0, int64_t count, const T* plane, T* patch) {
  const TileRuns runs(s, p0, count);
  for (int64_t a = 0; a < s.kH; ++a) {
    for (int64_t b = 0; b < s.kW; ++b) {
      T* row = patch + (a * s.kW + b) * kTile;
      for_each_tap_run(s, runs, a, b, [&](int64_t p, int64_t len, int64_t ih, int64_t iw, int64_t lo, int64_t hi) {
        T* dst = row + p;
        std::fill(dst, dst + lo, T(0));
        if (hi > lo) {
          const T* src = plane + ih * s.W + iw + lo * s.sW;
          if (s.sW == 1) {
            copy_short(dst + lo, src, hi - lo);
          } else {
            for (int64_t jj = lo; jj < hi; ++jj) dst[jj] = src[(jj - lo) * s.sW];
          }
        }
        std::fill(dst + hi, dst + len, T(0));
      });
      std::fill(row + count, row + kTile, T(0));
    }
  }
}

// The transpose of gather_patch (col2im for one tile): plane += dpatch at the taps.
template <typename T>
void scatter_patch(const AdaptiveConvShape& s, int64_t p0, int64_t count, const T* dpatch, T* plane) {
  const TileRuns runs(s, p0, count);
  for (int64_t a = 0; a < s.kH; ++a) {
    for (int64_t b = 0; b < s.kW; ++b) {
      const T* row = dpatch + (a * s.kW + b) * kTile;
      for_each_tap_run(s, runs, a, b, [&](int64_t p, int64_t, int64_t ih, int64_t iw, int64_t lo, int64_t hi) {
        if (hi <= lo) return;
        T* dst = plane + ih * s.W + iw + lo * s.sW;
        const T* src = row + p + lo;
        add_short(dst, s.sW, src, hi - lo);
      });
    }
  }
}

// ---------------------------------------------------------------- the rows a tile reads
// A tile's patch X[k][p] (tap k, pixel p of the tile) is read as row(k)[p], in one of
// two layouts that share every kernel below:
//  - staged: gather_patch's copy, row k at k * kTile, tile t of a chunk at t * T2 * kTile;
//  - direct (stride 1): zero-padded input rows, P = W + 2 pW wide, with output pixel
//    (i, j) at position q = i * P + j and its tap (a, b) at q + a dH P + b dW. Every
//    tap row of a tile is then a contiguous run of the padded rows, so nothing is
//    gathered or scattered per tap; the columns j >= Wo of each row are computed and
//    dropped (P - Wo of every P lanes).
template <typename T>
struct PatchRows {
  const T* base;
  const int64_t* off;   // the T2 tap offsets
  int64_t tile_stride;  // from one tile of a chunk to the next
  const T* row(int64_t k) const { return base + off[k]; }
  PatchRows tile(int64_t t) const { return {base + t * tile_stride, off, tile_stride}; }
};

// Tap offsets of the staged layout (k * kTile); DirectLayout holds the direct one's.
inline std::vector<int64_t> staged_offsets(int64_t T2) {
  std::vector<int64_t> off(T2);
  for (int64_t k = 0; k < T2; ++k) off[k] = k * kTile;
  return off;
}

// Geometry of the direct layout of one image plane (stride 1 only).
struct DirectLayout {
  int64_t P, Lq, tiles, reach;  // row pitch, positions Ho*P, tiles of them, furthest tap offset
  std::vector<int64_t> off;
  explicit DirectLayout(const AdaptiveConvShape& s)
      : P(s.W + 2 * s.pW), Lq(s.Ho * P), tiles((Lq + kTile - 1) / kTile),
        reach((s.kH - 1) * s.dH * P + (s.kW - 1) * s.dW), off(s.taps()) {
    for (int64_t a = 0; a < s.kH; ++a)
      for (int64_t b = 0; b < s.kW; ++b) off[a * s.kW + b] = a * s.dH * P + b * s.dW;
  }
  // Padded rows [r0, r0 + rows) that tiles [q0, q0 + nt * kTile) read (r0 = q0 / P),
  // and the most of them for any q0.
  int64_t rows_read(int64_t q0, int64_t nt) const { return (q0 + nt * kTile + reach + P - 1) / P - q0 / P; }
  int64_t max_rows_read(int64_t nt) const { return (nt * kTile + reach + 2 * P - 2) / P; }
};

// Whether the direct layout is used: stride 1, few output channels per group (the
// staged patch is gathered once per input channel and read by every output channel of
// the group, so the gathering matters only when few read it), and at most an eighth of
// the lanes dropped (depthwise-k7 drops 6 of 34 and ran slower direct in one of two
// runs). Measured on the SPEC shapes, float32, 2-core Intel Xeon (Emerald Rapids class),
// 2026-12-06, forward / forward+backward ms, staged -> direct: depthwise-256 (1 output
// channel per group) 14.1 -> 5.3 / 37.0 -> 21.6; depthwise-k7 (1) 14.4 -> 14.9 /
// 50.8 -> 41.8; lenet-mnist (6) 2.9 -> 2.4 / 10.0 -> 7.2; resnet-stem (16) 2.8 -> 2.9 /
// 6.9 -> 8.5; mid-64 (64) 25.9 -> 33.2 / 88.6 -> 100.3. The rule is the shape's alone, so
// the result never depends on the machine.
inline bool use_direct_layout(const AdaptiveConvShape& s) {
  const int64_t P = s.W + 2 * s.pW;
  return s.sH == 1 && s.sW == 1 && s.out_per_group() <= 8 && 8 * (P - s.Wo) <= P;
}

// Padded rows [r0, r0 + rows) of one input plane into buf (P wide): padded row r is
// input row r - pH, zero outside the image and in the pW columns either side.
template <typename T>
void fill_padded_rows(const AdaptiveConvShape& s, const T* plane, int64_t r0, int64_t rows, int64_t P, T* buf) {
  for (int64_t r = 0; r < rows; ++r) {
    T* dst = buf + r * P;
    const int64_t ih = r0 + r - s.pH;
    if (ih < 0 || ih >= s.H) {
      std::fill_n(dst, P, T(0));
      continue;
    }
    std::fill_n(dst, s.pW, T(0));
    copy_short(dst + s.pW, plane + ih * s.W, s.W);
    std::fill_n(dst + s.pW + s.W, P - s.pW - s.W, T(0));
  }
}

// fn(q, len, i, j) for the runs of positions [q0, q1) that are output pixels (j < Wo):
// positions q .. q + len - 1 are pixels (i, j) .. (i, j + len - 1).
template <typename Fn>
inline void for_each_output_run(const AdaptiveConvShape& s, int64_t P, int64_t q0, int64_t q1, Fn&& fn) {
  for (int64_t q = q0; q < q1;) {
    const int64_t i = q / P, j = q % P, len = std::min(P - j, q1 - q);
    if (j < s.Wo) fn(q, std::min(len, s.Wo - j), i, j);
    q += len;
  }
}

// ---------------------------------------------------------------- register-blocked micro-GEMM
// sigma[uv][p] = sum_ab Q[uv][ab] X[ab][p] (and dX[ab][p] = sum_uv Q[uv][ab] dsig[uv][p])
// is a small matrix product with pixels along the vector lanes. A block holds MR
// rows (kernel elements) x NR pixel vectors in registers: per step k it loads NR
// vectors of B and broadcasts MR weights for MR*NR multiply-adds.

// Pixel vectors per block: as many as the registers hold beside MR*NR accumulators.
template <int MR>
constexpr int pixel_vectors() {
  return (kVecRegs == 32 && MR <= 5) ? 4 : 2;
}

// The weights Q (T2 x T2) of one (o, c) pair as the micro-GEMM reads them: each use
// broadcasts one element. Where a broadcast from memory is one load (AVX2, AVX-512,
// NEON) it reads Q itself; on SSE2 a broadcast is a load and a shuffle on the
// arithmetic ports, so set() broadcasts Q once into vectors that each use just loads.
template <typename T>
class Weights {
 public:
  using Vec = simd::Vec<T>;
  explicit Weights(int64_t T2) : vecs_(simd::kBroadcastIsLoad ? 0 : T2 * T2) {}
  void set(const T* q) {
    q_ = q;
    if constexpr (!simd::kBroadcastIsLoad) broadcast_all<false>(q, T(1));
  }
  // The weights times scale: only the SSE2 forward's row path scales them (where the weights
  // are read in place, scale is 1).
  void set(const T* q, T scale) {
    if constexpr (!simd::kBroadcastIsLoad) {
      if (scale != T(1)) {
        q_ = q;
        return broadcast_all<true>(q, scale);
      }
    }
    set(q);
  }
  Vec at(int64_t i) const {
    if constexpr (simd::kBroadcastIsLoad) return Vec(q_[i]);
    else return vecs_[i];
  }

 private:
  // A vector load and one shuffle a lane: lane by lane (a scalar load, shuffle and a
  // reload of vecs_'s pointer per element) it was ~4% of the portable mid-64 forward.
  // Out of line: inlined into the backward, GCC laid out its loops worse (+4%).
  // Scaled: times scale, in an instantiation of its own (the unscaled one, the backward's, is
  // the code it was).
  template <bool Scaled>
  [[gnu::noinline]] void broadcast_all(const T* q, [[maybe_unused]] T scale) {
    Vec* out = vecs_.data();
    const int64_t n = int64_t(vecs_.size());
    int64_t i = 0;
    // unqualified: found by argument-dependent lookup when instantiated (builds with
    // broadcast loads define no broadcast_lanes and never instantiate this)
    for (; i + Vec::size() <= n; i += Vec::size()) {
      Vec v = Vec::loadu(q + i);
      if constexpr (Scaled) v = v * Vec(scale);
      broadcast_lanes(v, out + i);
    }
    for (; i < n; ++i) out[i] = Vec(Scaled ? q[i] * scale : q[i]);
  }

  const T* q_ = nullptr;
  std::vector<Vec> vecs_;
};

// Steps k unrolled by 3 in the SSE2 build only, where without FMA a step is twice the
// instructions and the loop's own counting and indexing weighed more: mid-64 backward, one
// thread, 240 ms not unrolled, 231 unrolled by 9, 204 by 3 (of a later tanh: 212 by 9),
// and 254 with the 9 steps of a 3x3 kernel fully unrolled (AMD EPYC Zen 5, 2026-12-06).
#if defined(ADAPTIVE_CONV_SIMD_SSE2)
#define ADAPTIVE_CONV_UNROLL_K_STEPS _Pragma("GCC unroll 3")
#else
#define ADAPTIVE_CONV_UNROLL_K_STEPS
#endif

// acc[r][j] += sum_{k < K} Q[a0 + r*rs + k*ks] * B.row(k)[p + j*V]
template <int MR, int NR, typename T>
inline void micro_gemm(simd::Vec<T> (&acc)[MR][NR], const Weights<T>& A, int64_t a0, int64_t rs, int64_t ks,
                       int64_t K, const PatchRows<T>& B, int64_t p) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  // A local copy whose address never escapes, so GCC keeps it in registers: updating the
  // caller's array (which it hands on by reference) stored every accumulator back to the
  // stack on every step k (perf: those stores, not the FMAs, were the hot instructions).
  Vec c[MR][NR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) c[r][j] = acc[r][j];
  ADAPTIVE_CONV_UNROLL_K_STEPS
  for (int64_t k = 0; k < K; ++k) {
    Vec b[NR];
    const T* Bk = B.row(k) + p;
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) b[j] = Vec::loadu(Bk + j * V);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const Vec a = A.at(a0 + r * rs + k * ks);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) c[r][j] = simd::fmadd(a, b[j], c[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[r][j] = c[r][j];
}

// ---------------------------------------------------------------- SSE2: a kernel row's weights in registers
// Without FMA a multiply-add is a multiply and an add, and a step of micro_gemm's 3x2 block
// (6 of them) took ~4 cycles, against 3.0 with its operands in registers: loading and copying
// the broadcast weights cost the difference (benchmarks/results/sse2_ports.cpp, AMD EPYC Zen 5).
// With k = 3 the 9 weights of one kernel row fit in registers beside 4 accumulators, and each
// multiply-add is a pixel load, a multiply by a register and an add (3.0 cycles per 6). The
// forward and backward then take a tile's sigma rows first and their tanh in a second pass
// (the tanh needs the registers), and the backward's dX product is the same loop. mid-64, one
// thread, AMD EPYC Zen 5, 2026-12-06: forward 107 -> 103 ms; backward 209 -> 210 ms (weight
// gradient only 158 -> 153, input gradient only 164 -> 163). The backward's pass handles two
// pixel vectors at a time: one at a time it was 2% slower than the register blocks.
#if defined(ADAPTIVE_CONV_SIMD_SSE2)
#define ADAPTIVE_CONV_ROW_GEMM 1
constexpr int64_t kRowGemmTaps = 9;

// out[r][p] (row r at out + r * kTile) = beta[r] (0 without beta), or out[r][p] itself when
// Accumulate, + sum_k A[r * rs + k * ks] B.row(k)[p], for the kRowGemmTaps rows r and the
// kTile pixels of a tile.
template <bool Accumulate, typename T>
void row_gemm(const Weights<T>& A, int64_t rs, int64_t ks, const PatchRows<T>& B, const T* beta, T* out) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  constexpr int G = 4;  // pixel vectors per pass: 9 weights + 4 accumulators + temporaries = 16 registers
  static_assert(kTile % (G * V) == 0, "tile must be a whole number of pixel groups");
  const T* rows[kRowGemmTaps];
  for (int64_t k = 0; k < kRowGemmTaps; ++k) rows[k] = B.row(k);
  for (int64_t r = 0; r < kRowGemmTaps; ++r) {
    Vec w[kRowGemmTaps];
#pragma GCC unroll 9
    for (int64_t k = 0; k < kRowGemmTaps; ++k) w[k] = A.at(r * rs + k * ks);
    const Vec init(beta ? beta[r] : T(0));
    T* o = out + r * kTile;
    for (int64_t p = 0; p < kTile; p += G * V) {
      Vec acc[G];
#pragma GCC unroll 4
      for (int j = 0; j < G; ++j) acc[j] = Accumulate ? Vec::loadu(o + p + j * V) : init;
#pragma GCC unroll 9
      for (int64_t k = 0; k < kRowGemmTaps; ++k) {
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) acc[j] = simd::fmadd(w[k], Vec::loadu(rows[k] + p + j * V), acc[j]);
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) simd::keep_step_order(acc[j]);
      }
#pragma GCC unroll 4
      for (int j = 0; j < G; ++j) acc[j].store(o + p + j * V);
    }
  }
}

// The tanh pass after row_gemm, for the 2 pixel vectors at p of a tile's sigma rows: body(uv, j,
// t) with t = tanh(sigma[uv][p + j V]) for each kernel row uv in order and j = 0, 1. The tanh
// runs on 2 rows (4 vectors) at a time, interleaved (simd::tanh_each): mid-64, one thread, AMD
// EPYC Zen 5, 2026-12-06, forward 104.7 -> 101.2 ms, backward 213.3 -> 204.9 (2 vectors at a
// time: the backward slower again by 1-2%; 6 in a cycle count of the pass alone: no faster).
// Scaled: t = simd::scaled_tanh_each's gamma tanh instead (see ForwardScale).
template <bool Scaled, typename T, typename Body>
[[gnu::always_inline]] inline void for_each_tanh_pair(const T* sigma, int64_t p, Body&& body) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  auto rows = [&](auto count, int64_t uv0) {
    constexpr int R = decltype(count)::value;
    Vec t[2 * R];
#pragma GCC unroll 4
    for (int i = 0; i < 2 * R; ++i) t[i] = Vec::loadu(sigma + (uv0 + i / 2) * kTile + p + (i % 2) * V);
#if defined(ADAPTIVE_CONV_SIMD_SCALED_TANH)
    if constexpr (Scaled) simd::scaled_tanh_each(t);
    else
#endif
      simd::tanh_each(t);
#pragma GCC unroll 4
    for (int i = 0; i < 2 * R; ++i) body(uv0 + i / 2, i % 2, t[i]);
  };
#pragma GCC unroll 4
  for (int64_t uv0 = 0; uv0 + 2 <= kRowGemmTaps; uv0 += 2) rows(std::integral_constant<int, 2>{}, uv0);
  if constexpr (kRowGemmTaps % 2 == 1) rows(std::integral_constant<int, 1>{}, kRowGemmTaps - 1);
}
#endif

// The float forward's row path (SSE2, 3x3 kernels) takes simd::scaled_tanh_each, 8
// multiplications a tanh instead of 10: its sigma rows are computed from the weights and kernel
// bias times simd::kScaledTanhArgScale, and its accumulators hold gamma y (the bias times
// gamma), divided by gamma when stored (so |y| over FLT_MAX / gamma = 1.2e38 overflows, where
// the other paths reach 3.4e38). mid-64 forward, one thread, AMD EPYC Zen 5, 2026-12-06:
// 99.6 -> 91.2 ms. Elsewhere the scales are 1, known at compile time where no instantiation
// scales (the other builds compile as before). The backward keeps tanh: scaled the same way
// (dsig as d sigma / a, dq times a) it was at most 2% faster.
template <typename T>
struct ForwardScale {
  T weights = T(1), bias = T(1), output = T(1);
};
template <typename T>
struct UnitForwardScale {
  static constexpr T weights = T(1), bias = T(1), output = T(1);
};
#if defined(ADAPTIVE_CONV_ROW_GEMM) && defined(ADAPTIVE_CONV_SIMD_SCALED_TANH)
template <int MR, typename T>
constexpr bool kScaledRowPath = MR == 3 && std::is_same_v<T, float>;
#else
template <int MR, typename T>
constexpr bool kScaledRowPath = false;
#endif
template <int MR, typename T>
inline auto forward_scale([[maybe_unused]] int64_t T2) {
#if defined(ADAPTIVE_CONV_ROW_GEMM) && defined(ADAPTIVE_CONV_SIMD_SCALED_TANH)
  if constexpr (kScaledRowPath<MR, T>) {
    if (T2 == kRowGemmTaps)
      return ForwardScale<T>{simd::kScaledTanhArgScale, simd::kScaledTanhOutScale,
                             T(1 / double(simd::kScaledTanhOutScale))};
    return ForwardScale<T>{};
  } else
#endif
    return UnitForwardScale<T>{};
}

// Rows per block for T2 kernel elements: a divisor of T2 when one fits (k = 3, 5, 7
// give MR = k), else 4 with single-row blocks for the remainder.
inline int rows_per_block(int64_t T2) {
  for (int mr : {4, 3, 5, 7, 6, 2})
    if (T2 % mr == 0) return mr;
  return 4;
}

template <typename Fn>
inline void with_rows_per_block(int64_t T2, Fn&& fn) {
  switch (rows_per_block(T2)) {
    case 2: return fn(std::integral_constant<int, 2>{});
    case 3: return fn(std::integral_constant<int, 3>{});
    case 5: return fn(std::integral_constant<int, 5>{});
    case 6: return fn(std::integral_constant<int, 6>{});
    case 7: return fn(std::integral_constant<int, 7>{});
    default: return fn(std::integral_constant<int, 4>{});
  }
}

// Calls body(uv0, acc) for the blocks of MR (then 1) kernel elements of one block of
// NR pixel vectors at pixel p, acc = sigma = beta + Q X in registers.
template <int MR, int NR, typename T, typename Body>
inline void for_each_sigma_block(const Weights<T>& q, const T* beta, const PatchRows<T>& X, int64_t p, int64_t T2,
                                 Body&& body) {
  using Vec = simd::Vec<T>;
  int64_t uv0 = 0;
  for (; uv0 + MR <= T2; uv0 += MR) {
    Vec acc[MR][NR];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] = Vec(beta ? beta[uv0 + r] : T(0));
    micro_gemm<MR, NR>(acc, q, uv0 * T2, T2, 1, T2, X, p);
    body(uv0, acc);
  }
  for (; uv0 < T2; ++uv0) {
    Vec acc[1][NR];
    for (int j = 0; j < NR; ++j) acc[0][j] = Vec(beta ? beta[uv0] : T(0));
    micro_gemm<1, NR>(acc, q, uv0 * T2, T2, 1, T2, X, p);
    body(uv0, acc);
  }
}

// ---------------------------------------------------------------- forward

// Inlined into each caller: as one function shared by the two layouts GCC compiled the
// depthwise-k7 forward 1.4x slower (measured).
// q and out as forward_scale<MR, T>(T2) scales them.
template <int MR, typename T>
[[gnu::always_inline]] inline void forward_pair(const Weights<T>& q, const T* beta, const PatchRows<T> X, int64_t T2,
                                                T* out) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
#if defined(ADAPTIVE_CONV_ROW_GEMM)
  // only in the instantiation that 9 taps use (MR = 3): the others compile as before
  if constexpr (MR == 3) {
    if (T2 == kRowGemmTaps) {
      // sigma rows first, then the tanh pass with its 2 output vectors in registers
      constexpr bool scaled = kScaledRowPath<MR, T>;
      alignas(16) T sigma[kRowGemmTaps * kTile];
      T beta_scaled[kRowGemmTaps];  // the kernel bias scaled like the weights
      if (scaled && beta) {
        for (int64_t r = 0; r < kRowGemmTaps; ++r) beta_scaled[r] = beta[r] * forward_scale<MR, T>(T2).weights;
        beta = beta_scaled;
      }
      row_gemm<false>(q, kRowGemmTaps, 1, X, beta, sigma);
      for (int64_t p = 0; p < kTile; p += 2 * V) {
        Vec y[2] = {Vec::loadu(out + p), Vec::loadu(out + p + V)};
        for_each_tanh_pair<scaled>(sigma, p, [&](int64_t uv, int j, Vec t) {
          y[j] = simd::fmadd(t, Vec::loadu(X.row(uv) + p + j * V), y[j]);
        });
        y[0].store(out + p);
        y[1].store(out + p + V);
      }
      return;
    }
  }
#endif
  constexpr int NR = pixel_vectors<MR>();
  static_assert(kTile % (NR * V) == 0, "tile must be a whole number of pixel blocks");
  for (int64_t p = 0; p < kTile; p += NR * V) {
    Vec y[NR];
    for (int j = 0; j < NR; ++j) y[j] = Vec::loadu(out + p + j * V);
    for_each_sigma_block<MR, NR>(q, beta, X, p, T2, [&](int64_t uv0, auto& acc) {
      constexpr int R = std::extent_v<std::remove_reference_t<decltype(acc)>>;
      for (int r = 0; r < R; ++r)
        for (int j = 0; j < NR; ++j)
          y[j] = simd::fmadd(simd::tanh(acc[r][j]), Vec::loadu(X.row(uv0 + r) + p + j * V), y[j]);
    });
    for (int j = 0; j < NR; ++j) y[j].store(out + p + j * V);
  }
}

// Staged layout: work item = (image, tile); per input channel the tile's patch is
// gathered once and read by every output channel of the group.
template <int MR, typename T>
void forward_staged(const AdaptiveConvShape& s, const T* x, const T* w, const T* kb, const T* bias, T* y) {
  const int64_t T2 = s.taps(), Cg = s.in_per_group(), Og = s.out_per_group();
  const int64_t L = s.Ho * s.Wo, HW = s.H * s.W;
  const int64_t tiles = (L + kTile - 1) / kTile;
  const std::vector<int64_t> off = staged_offsets(T2);
  cpu::parallel_for(0, s.N * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> patch(T2 * kTile), acc(Og * kTile);
    const PatchRows<T> X{patch.data(), off.data(), T2 * kTile};
    Weights<T> q(T2);
    const auto scale = forward_scale<MR, T>(T2);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / tiles, p0 = (item % tiles) * kTile;
      const int64_t count = std::min(kTile, L - p0);
      for (int64_t g = 0; g < s.groups; ++g) {
        for (int64_t o = 0; o < Og; ++o)
          std::fill_n(acc.data() + o * kTile, kTile, bias ? bias[g * Og + o] * scale.bias : T(0));
        for (int64_t c = 0; c < Cg; ++c) {
          gather_patch(s, p0, count, x + (n * s.C + g * Cg + c) * HW, patch.data());
          for (int64_t o = 0; o < Og; ++o) {
            const int64_t pair = (g * Og + o) * Cg + c;  // (o, c) generator index
            q.set(w + pair * T2 * T2, scale.weights);
            forward_pair<MR>(q, kb ? kb + pair * T2 : nullptr, X, T2, acc.data() + o * kTile);
          }
        }
        for (int64_t o = 0; o < Og; ++o) {
          if constexpr (kScaledRowPath<MR, T>) scale_short(acc.data() + o * kTile, count, scale.output);
          std::memcpy(y + (n * s.O + g * Og + o) * L + p0, acc.data() + o * kTile, count * sizeof(T));
        }
      }
    }
  });
}

// Direct layout: work item = (image, chunk of tiles); per input channel the padded rows
// the chunk reads are copied once, and the tiles read their taps from them in place.
template <int MR, typename T>
void forward_direct(const AdaptiveConvShape& s, const T* x, const T* w, const T* kb, const T* bias, T* y) {
  const int64_t T2 = s.taps(), Cg = s.in_per_group(), Og = s.out_per_group();
  const int64_t L = s.Ho * s.Wo, HW = s.H * s.W;
  const DirectLayout d(s);
  // enough items for the cores of a small machine, from the shape alone
  const int64_t chunk = std::clamp<int64_t>((s.N * d.tiles + 15) / 16, 1, 16);
  const int64_t chunks = (d.tiles + chunk - 1) / chunk;
  cpu::parallel_for(0, s.N * chunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> rows(d.max_rows_read(chunk) * d.P), acc(Og * chunk * kTile);
    Weights<T> q(T2);
    const auto scale = forward_scale<MR, T>(T2);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t n = item / chunks, t0 = (item % chunks) * chunk, nt = std::min(chunk, d.tiles - t0);
      const int64_t q0 = t0 * kTile, q1 = std::min(q0 + nt * kTile, d.Lq), r0 = q0 / d.P;
      const PatchRows<T> X{rows.data() + (q0 - r0 * d.P), d.off.data(), kTile};
      for (int64_t g = 0; g < s.groups; ++g) {
        for (int64_t o = 0; o < Og; ++o)
          std::fill_n(acc.data() + o * chunk * kTile, nt * kTile, bias ? bias[g * Og + o] * scale.bias : T(0));
        for (int64_t c = 0; c < Cg; ++c) {
          fill_padded_rows(s, x + (n * s.C + g * Cg + c) * HW, r0, d.rows_read(q0, nt), d.P, rows.data());
          for (int64_t o = 0; o < Og; ++o) {
            const int64_t pair = (g * Og + o) * Cg + c;
            q.set(w + pair * T2 * T2, scale.weights);
            for (int64_t t = 0; t < nt; ++t)
              forward_pair<MR>(q, kb ? kb + pair * T2 : nullptr, X.tile(t), T2,
                               acc.data() + (o * chunk + t) * kTile);
          }
        }
        for (int64_t o = 0; o < Og; ++o) {
          T* plane = y + (n * s.O + g * Og + o) * L;
          const T* src = acc.data() + o * chunk * kTile - q0;
          if constexpr (kScaledRowPath<MR, T>) scale_short(acc.data() + o * chunk * kTile, nt * kTile, scale.output);
          for_each_output_run(s, d.P, q0, q1, [&](int64_t qq, int64_t len, int64_t i, int64_t j) {
            copy_short(plane + i * s.Wo + j, src + qq, len);
          });
        }
      }
    }
  });
}

template <typename T>
void forward_impl(const AdaptiveConvShape& s, const T* x, const T* w, const T* kb,
                  const T* bias, T* y) {
  with_rows_per_block(s.taps(), [&](auto mr) {
    constexpr int MR = decltype(mr)::value;
    if (use_direct_layout(s)) forward_direct<MR>(s, x, w, kb, bias, y);
    else forward_staged<MR>(s, x, w, kb, bias, y);
  });
}

// ---------------------------------------------------------------- backward
// Work item = (input channel c', band of output rows), looping over the images:
// the weight gradients of c' summed over one band go to that band's own partial,
// and the partials are added band by band in order, so the result is the same for
// any number of threads. grad_input: a band scatters into its rows plus a halo
// that reaches only into the neighbouring bands (a band is at least
// (kH-1)*dH/sH rows high), so even bands run first, then odd bands, each phase
// without two items writing one element and in a fixed order.

struct Bands {
  int64_t rows, count;
};

template <typename T>
Bands make_bands(const AdaptiveConvShape& s, int64_t w_numel) {
  const int64_t halo_rows = ((s.kH - 1) * s.dH + s.sH - 1) / s.sH;
  // Enough (channel, band) items for the cores of a small machine at batch 1, from the
  // shape alone (never the thread count, which must not change the result). Each item
  // zeroes and reduces its Og*T2*T2 lane accumulators, so no more bands than that.
  int64_t target = std::clamp<int64_t>((16 + s.C - 1) / std::max<int64_t>(s.C, 1), 1, 8);
  // the partials (one weight gradient per band) stay under 64 MiB
  while (target > 1 && target * (w_numel + w_numel / std::max<int64_t>(s.taps(), 1)) * int64_t(sizeof(T)) > (int64_t(64) << 20))
    target /= 2;
  const int64_t tile_rows = (kTile + s.Wo - 1) / s.Wo;  // at least a tile of pixels per band
  const int64_t rows = std::max({int64_t(1), halo_rows, tile_rows, (s.Ho + target - 1) / target});
  return {rows, (s.Ho + rows - 1) / rows};
}

#if defined(ADAPTIVE_CONV_ROW_GEMM)
// One vector of backward_sigma's pass after row_gemm, given t = tanh(sigma): d sigma =
// g X (1 - t^2) into *dsig (which held sigma), and the direct term g t added into dpatch[at]
// (if dpatch). (backward_sigma_block below does the same inline: through this function, GCC
// compiled the AVX2 and AVX-512 backward differently.)
template <typename T>
inline void dsigma_vector(simd::Vec<T> g, simd::Vec<T> t, const T* x, T* dsig, T* dpatch, int64_t at) {
  using Vec = simd::Vec<T>;
  if (dpatch) {
    T* d = dpatch + at;
    simd::fmadd(g, t, Vec::loadu(d)).store(d);
  }
  const Vec gx = g * Vec::loadu(x);
  simd::fnmadd(gx * t, t, gx).store(dsig);
}
#endif

// One block of backward_sigma from its sigma (kernel elements uv0 .. uv0 + R - 1, NR
// pixel vectors at p).
template <int R, int NR, typename T>
inline void backward_sigma_block(const simd::Vec<T> (&acc)[R][NR], const PatchRows<T>& X, int64_t uv0, int64_t p,
                                 const T* gout, T* dsig, T* dpatch) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  for (int r = 0; r < R; ++r) {
    const int64_t row = (uv0 + r) * kTile + p;
    const T* x_row = X.row(uv0 + r) + p;
    for (int j = 0; j < NR; ++j) {
      const Vec g = Vec::loadu(gout + p + j * V), t = simd::tanh(acc[r][j]);
      if (dpatch) {
        T* d = dpatch + row + j * V;
        simd::fmadd(g, t, Vec::loadu(d)).store(d);
      }
      const Vec gx = g * Vec::loadu(x_row + j * V);
      simd::fnmadd(gx * t, t, gx).store(dsig + row + j * V);  // g X (1 - t^2)
    }
  }
}

// Out of line for blocks of 7 rows (7x7 kernels): inlined, GCC kept the tanh's constants in
// registers across the micro-GEMM and an accumulator on the stack instead (a store per
// step k: a quarter of the depthwise-k7 backward's time; out of line its forward + backward
// went 21.4 -> 19.5 ms). Other blocks stay inline, where the call cost more than it saved:
// lenet-mnist (5 rows x 4 vectors) 2.7 -> 3.1 ms, mid-64 (3 rows) ~5%. AMD EPYC (Zen 5),
// AVX-512, 2026-12-06. (The SSE2 build's blocks were out of line too while its tanh used
// Horner's scheme, 272 -> 242 ms; with the SSE2 tanh of now, inline is faster: mid-64
// backward, one thread, 218 -> 214 ms.)
template <int R, int NR, typename T>
[[gnu::noinline]] void backward_sigma_block_outlined(const simd::Vec<T> (&acc)[R][NR], const PatchRows<T>& X,
                                                     int64_t uv0, int64_t p, const T* gout, T* dsig, T* dpatch) {
  backward_sigma_block(acc, X, uv0, p, gout, dsig, dpatch);
}

// Per (o, tile): t = K, d sigma = g X[uv] (1 - t^2) into dsig; the direct term g t into dpatch.
template <int MR, typename T>
void backward_sigma(const Weights<T>& q, const T* beta, const PatchRows<T>& X, const T* gout, int64_t T2, T* dsig,
                    T* dpatch) {
#if defined(ADAPTIVE_CONV_ROW_GEMM)
  if constexpr (MR == 3) {
    if (T2 == kRowGemmTaps) {
      // the sigma rows into dsig, then each vector replaced by its d sigma, 2 pixel vectors at a
      // time (dpatch tested per vector: as fast as a pass compiled for each case, mid-64 backward
      // 199.3 against 199.9 ms, one thread, AMD EPYC Zen 5)
      using Vec = simd::Vec<T>;
      constexpr int64_t V = Vec::size();
      row_gemm<false>(q, kRowGemmTaps, 1, X, beta, dsig);
      for (int64_t p = 0; p < kTile; p += 2 * V) {
        const Vec g[2] = {Vec::loadu(gout + p), Vec::loadu(gout + p + V)};
        for_each_tanh_pair<false>(dsig, p, [&](int64_t uv, int j, Vec t) {
          const int64_t at = uv * kTile + p + j * V;
          dsigma_vector(g[j], t, X.row(uv) + p + j * V, dsig + at, dpatch, at);
        });
      }
      return;
    }
  }
#endif
  constexpr int NR = pixel_vectors<MR>();
  for (int64_t p = 0; p < kTile; p += NR * simd::Vec<T>::size()) {
    for_each_sigma_block<MR, NR>(q, beta, X, p, T2, [&](int64_t uv0, const auto& acc) {
      constexpr int R = std::extent_v<std::remove_reference_t<decltype(acc)>>;
      if constexpr (R >= 7) backward_sigma_block_outlined(acc, X, uv0, p, gout, dsig, dpatch);
      else backward_sigma_block(acc, X, uv0, p, gout, dsig, dpatch);
    });
  }
}

// dX[ab][p] += sum_uv Q[uv][ab] dsig[uv][p]: the micro-GEMM with Q read transposed.
template <int MR, typename T>
void backward_dx(const Weights<T>& q, const PatchRows<T>& dsig, int64_t T2, T* dpatch) {
#if defined(ADAPTIVE_CONV_ROW_GEMM)
  if constexpr (MR == 3) {
    if (T2 == kRowGemmTaps) return row_gemm<true>(q, 1, kRowGemmTaps, dsig, static_cast<const T*>(nullptr), dpatch);
  }
#endif
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  constexpr int NR = pixel_vectors<MR>();
  auto block = [&](auto rows, int64_t ab0, int64_t p) {
    constexpr int R = decltype(rows)::value;
    Vec acc[R][NR];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] = Vec::loadu(dpatch + (ab0 + r) * kTile + p + j * V);
    micro_gemm<R, NR>(acc, q, ab0, 1, T2, T2, dsig, p);
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j].store(dpatch + (ab0 + r) * kTile + p + j * V);
  };
  for (int64_t p = 0; p < kTile; p += NR * V) {
    int64_t ab0 = 0;
    for (; ab0 + MR <= T2; ab0 += MR) block(std::integral_constant<int, MR>{}, ab0, p);
    for (; ab0 < T2; ++ab0) block(std::integral_constant<int, 1>{}, ab0, p);
  }
}

// Tiles whose dsigma and patch the weight gradient reads in one pass: its lane
// accumulators are loaded and stored once per chunk instead of once per tile.
constexpr int64_t kChunkTiles = 4;

// Weight-gradient columns per block of MR rows: MR*NB accumulators, the MR dsigma
// vectors of one pixel vector and one patch vector in registers.
template <int MR>
constexpr int dq_columns() {
  return std::min(9, (kVecRegs - MR - 2) / MR);  // one register spare for the compiler
}

// dQ[uv][ab] += sum_p dsig[uv][p] X[ab][p], dbeta[uv] += sum_p dsig[uv][p] over the
// `tiles` tiles of a chunk (tile t at offset t * T2 * kTile), both kept as vectors of
// per-lane partial sums (dq: T2*T2 vectors, db: T2 vectors).
template <int MR, typename T>
void backward_dq(const T* dsig, const PatchRows<T>& X, int64_t T2, int64_t tiles, T* dq, T* db) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  constexpr int NB = dq_columns<MR>();
  const int64_t tile_stride = T2 * kTile;
  auto block = [&](auto rows, auto cols, int64_t uv0, int64_t ab0) {
    constexpr int R = decltype(rows)::value, B = decltype(cols)::value;
    Vec acc[R][B];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 9
      for (int j = 0; j < B; ++j) acc[r][j] = Vec::loadu(dq + ((uv0 + r) * T2 + ab0 + j) * V);
    for (int64_t t = 0; t < tiles; ++t) {
      const T* ds = dsig + t * tile_stride + uv0 * kTile;
      const PatchRows<T> xt = X.tile(t);
      for (int64_t p = 0; p < kTile; p += V) {
        Vec d[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) d[r] = Vec::loadu(ds + r * kTile + p);
#pragma GCC unroll 9
        for (int j = 0; j < B; ++j) {
          const Vec xv = Vec::loadu(xt.row(ab0 + j) + p);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r][j] = simd::fmadd(d[r], xv, acc[r][j]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 9
      for (int j = 0; j < B; ++j) acc[r][j].store(dq + ((uv0 + r) * T2 + ab0 + j) * V);
  };
  auto rows_block = [&](auto rows, int64_t uv0) {
    int64_t ab0 = 0;
    for (; ab0 + NB <= T2; ab0 += NB) block(rows, std::integral_constant<int, NB>{}, uv0, ab0);
    for (; ab0 < T2; ++ab0) block(rows, std::integral_constant<int, 1>{}, uv0, ab0);
  };
  int64_t uv0 = 0;
  for (; uv0 + MR <= T2; uv0 += MR) rows_block(std::integral_constant<int, MR>{}, uv0);
  for (; uv0 < T2; ++uv0) rows_block(std::integral_constant<int, 1>{}, uv0);
  for (int64_t uv = 0; uv < T2; ++uv) {
    Vec acc = Vec::loadu(db + uv * V);
    for (int64_t t = 0; t < tiles; ++t)
      for (int64_t p = 0; p < kTile; p += V) acc = acc + Vec::loadu(dsig + t * tile_stride + uv * kTile + p);
    acc.store(db + uv * V);
  }
}

template <typename T>
void backward_impl(const AdaptiveConvShape& s, const T* gy, const T* x, const T* w, const T* kb,
                   T* gx, T* gw, T* gkb) {
  using Vec = simd::Vec<T>;
  constexpr int64_t V = Vec::size();
  const int64_t T2 = s.taps(), Cg = s.in_per_group(), Og = s.out_per_group();
  const int64_t L = s.Ho * s.Wo, HW = s.H * s.W;
  const bool need_gx = gx != nullptr, need_gw = gw != nullptr;
  const int64_t w_numel = s.O * Cg * T2 * T2, kb_numel = s.O * Cg * T2;

  if (need_gw) {
    std::fill_n(gw, w_numel, T(0));
    std::fill_n(gkb, kb_numel, T(0));
  }
  if (s.N == 0 || L == 0 || s.C == 0) return;

  const Bands bands = make_bands<T>(s, w_numel);
  const bool direct = use_direct_layout(s);
  const DirectLayout d(s);
  const std::vector<int64_t> staged = staged_offsets(T2);
  std::vector<T> gw_part(need_gw ? bands.count * w_numel : 0), gkb_part(need_gw ? bands.count * kb_numel : 0);

  with_rows_per_block(T2, [&](auto mr) {
    constexpr int MR = decltype(mr)::value;
    for (int64_t phase = 0; phase < 2; ++phase) {
      const int64_t bands_in_phase = (bands.count - phase + 1) / 2;
      cpu::parallel_for(0, s.C * bands_in_phase, 1, [&](int64_t begin, int64_t end) {
        const int64_t tile_stride = T2 * kTile, chunk = kChunkTiles * kTile;
        std::vector<T> patch(direct ? 0 : kChunkTiles * tile_stride), dpatch(kChunkTiles * tile_stride);
        std::vector<T> dsig(kChunkTiles * tile_stride), gout(kChunkTiles * kTile);
        const PatchRows<T> dsig_rows{dsig.data(), staged.data(), tile_stride};
        // direct layout: the band's padded input rows, and its input gradient in the same layout
        const int64_t band_tiles = (bands.rows * d.P + kTile - 1) / kTile;
        std::vector<T> xrows(direct ? d.max_rows_read(band_tiles) * d.P : 0);
        std::vector<T> gxrows(direct && need_gx ? xrows.size() : 0);
        Weights<T> q(T2);
        std::vector<T> dq_lanes(need_gw ? Og * T2 * T2 * V : 0), db_lanes(need_gw ? Og * T2 * V : 0);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t c_abs = item / bands_in_phase, band = 2 * (item % bands_in_phase) + phase;
          const int64_t g = c_abs / Cg, c = c_abs % Cg;
          const int64_t i0 = band * bands.rows, i1 = std::min(s.Ho, i0 + bands.rows);
          // the band's work: pixels (staged) or positions (direct) [pos_begin, pos_end)
          const int64_t pos_begin = i0 * (direct ? d.P : s.Wo), pos_end = i1 * (direct ? d.P : s.Wo);
          const int64_t r0 = i0, nrows = direct ? d.rows_read(pos_begin, (pos_end - pos_begin + kTile - 1) / kTile) : 0;
          std::fill(dq_lanes.begin(), dq_lanes.end(), T(0));
          std::fill(db_lanes.begin(), db_lanes.end(), T(0));
          for (int64_t n = 0; n < s.N; ++n) {
            const T* x_plane = x + (n * s.C + c_abs) * HW;
            T* gx_plane = need_gx ? gx + (n * s.C + c_abs) * HW : nullptr;
            if (direct) {
              fill_padded_rows(s, x_plane, r0, nrows, d.P, xrows.data());
              if (need_gx) std::fill_n(gxrows.begin(), nrows * d.P, T(0));
            }
            for (int64_t c0 = pos_begin; c0 < pos_end; c0 += chunk) {
              const int64_t tiles = (std::min(chunk, pos_end - c0) + kTile - 1) / kTile;
              auto tile_count = [&](int64_t t) { return std::min(kTile, pos_end - c0 - t * kTile); };
              const PatchRows<T> X = direct ? PatchRows<T>{xrows.data() + (c0 - r0 * d.P), d.off.data(), kTile}
                                            : PatchRows<T>{patch.data(), staged.data(), tile_stride};
              if (!direct)
                for (int64_t t = 0; t < tiles; ++t)
                  gather_patch(s, c0 + t * kTile, tile_count(t), x_plane, patch.data() + t * tile_stride);
              if (need_gx) std::fill_n(dpatch.begin(), tiles * tile_stride, T(0));
              for (int64_t o = 0; o < Og; ++o) {
                const int64_t o_abs = g * Og + o, pair = o_abs * Cg + c;
                const T* gy_plane = gy + (n * s.O + o_abs) * L;
                q.set(w + pair * T2 * T2);
                // the chunk's output gradient, zero past the band and (direct) in the dropped columns
                std::fill_n(gout.begin(), tiles * kTile, T(0));
                if (direct) {
                  for_each_output_run(s, d.P, c0, std::min(c0 + tiles * kTile, pos_end),
                                      [&](int64_t qq, int64_t len, int64_t i, int64_t j) {
                                        copy_short(gout.data() + (qq - c0), gy_plane + i * s.Wo + j, len);
                                      });
                } else {
                  copy_short(gout.data(), gy_plane + c0, std::min(chunk, pos_end - c0));
                }
                for (int64_t t = 0; t < tiles; ++t) {
                  T* dsig_t = dsig.data() + t * tile_stride;
                  T* dpatch_t = need_gx ? dpatch.data() + t * tile_stride : nullptr;
                  backward_sigma<MR>(q, kb ? kb + pair * T2 : nullptr, X.tile(t), gout.data() + t * kTile, T2,
                                     dsig_t, dpatch_t);
                  if (need_gx) backward_dx<MR>(q, dsig_rows.tile(t), T2, dpatch_t);
                }
                if (need_gw)
                  backward_dq<MR>(dsig.data(), X, T2, tiles, dq_lanes.data() + o * T2 * T2 * V,
                                  db_lanes.data() + o * T2 * V);
              }
              if (need_gx) {
                for (int64_t t = 0; t < tiles; ++t) {
                  const T* dpatch_t = dpatch.data() + t * tile_stride;
                  if (direct) {  // the taps' rows are runs of the padded gradient: added row by row, in order
                    T* base = gxrows.data() + (c0 + t * kTile - r0 * d.P);
                    for (int64_t k = 0; k < T2; ++k) add_short(base + d.off[k], 1, dpatch_t + k * kTile, kTile);
                  } else {
                    scatter_patch(s, c0 + t * kTile, tile_count(t), dpatch_t, gx_plane);
                  }
                }
              }
            }
            if (direct && need_gx) {
              // the rows this band's pixels reach (its own and the halo below it): the
              // positions past the band and in the dropped columns added only zeros
              const int64_t r_end = std::min(r0 + nrows, i1 + (s.kH - 1) * s.dH);
              for (int64_t r = r0; r < r_end; ++r) {
                const int64_t ih = r - s.pH;
                if (ih >= 0 && ih < s.H) add_short(gx_plane + ih * s.W, 1, gxrows.data() + (r - r0) * d.P + s.pW, s.W);
              }
            }
          }
          if (need_gw) {
            // lanes summed in a fixed order into this band's partial
            T* gw_b = gw_part.data() + band * w_numel;
            T* gkb_b = gkb_part.data() + band * kb_numel;
            auto lane_sums = [&](const T* lanes, int64_t count, T* out) {
              for (int64_t i = 0; i < count; ++i, lanes += V) {
                T sum = 0;
                for (int64_t l = 0; l < V; ++l) sum += lanes[l];
                out[i] = sum;
              }
            };
            for (int64_t o = 0; o < Og; ++o) {
              const int64_t pair = (g * Og + o) * Cg + c;
              lane_sums(dq_lanes.data() + o * T2 * T2 * V, T2 * T2, gw_b + pair * T2 * T2);
              lane_sums(db_lanes.data() + o * T2 * V, T2, gkb_b + pair * T2);
            }
          }
        }
      });
    }
  });

  if (need_gw) {
    for (int64_t band = 0; band < bands.count; ++band) {
      const T* gw_b = gw_part.data() + band * w_numel;
      const T* gkb_b = gkb_part.data() + band * kb_numel;
      for (int64_t i = 0; i < w_numel; ++i) gw[i] += gw_b[i];
      for (int64_t i = 0; i < kb_numel; ++i) gkb[i] += gkb_b[i];
    }
  }
}

}  // namespace

void forward(const AdaptiveConvShape& s, const float* x, const float* w, const float* kb,
             const float* bias, float* y) {
  forward_impl<float>(s, x, w, kb, bias, y);
}
void forward(const AdaptiveConvShape& s, const double* x, const double* w, const double* kb,
             const double* bias, double* y) {
  forward_impl<double>(s, x, w, kb, bias, y);
}
void backward(const AdaptiveConvShape& s, const float* gy, const float* x, const float* w,
              const float* kb, float* gx, float* gw, float* gkb) {
  backward_impl<float>(s, gy, x, w, kb, gx, gw, gkb);
}
void backward(const AdaptiveConvShape& s, const double* gy, const double* x, const double* w,
              const double* kb, double* gx, double* gw, double* gkb) {
  backward_impl<double>(s, gy, x, w, kb, gx, gw, gkb);
}

}  // namespace adaptive_conv_ext::cpu::CPU_CAPABILITY
