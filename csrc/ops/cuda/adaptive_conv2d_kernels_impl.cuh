// CUDA kernels for adaptive_conv2d (SPEC section 1), torch-free: device code and the
// launcher templates. Included only by the adaptive_conv2d_kernels*.cu files, each of
// which instantiates the launchers for one dtype (so that they compile in parallel).
//
// Layout of the work (one output pixel per thread, 256 threads per block):
//
// forward      block = (image n, group, tile of output pixels, tile of output channels).
//              Loops over the group's input channels in chunks: stages the input box
//              (tile + halo) and Q/beta of the chunk in shared memory, then each thread
//              computes sigma = beta + Q.X, tanh, and K.X for its pixel; the per-channel
//              result is added to a per-thread shared-memory accumulator, y written once.
// grad_input   block = (image n, input channel c, tile). Loops over every output channel
//              of c's group: recomputes sigma and K, accumulates the patch gradient dX of
//              its pixel (direct term g*K and the term through the kernel dsigma*Q), then
//              scatters the patches into a shared box (tile + halo) one tap per round so
//              that no two threads ever add to the same element (fixed order, no shared
//              atomics), and flushes the box: plain stores when one tile covers the image,
//              else atomicAdd, or (deterministic) a per-tile workspace that a gather kernel
//              sums in a fixed order.
// grad_weight  block = (tile of output channels, input channel c, chunk of kernel rows t,
//              split s). Q rows of the block stay in shared memory; the block walks over
//              the tiles (n, tile) = s, s + S, ...; per tile: stage the input box, each
//              thread recomputes dsigma for its pixel (all rows of the block) into shared
//              memory together with its patch; then the threads switch roles: each owns
//              one (o, t, a-range) row of dQ and sums dsigma * X over the tile's pixels.
//              Per-tile partials are added to double running sums (float32 sums over
//              ~10^5 pixels would lose the 1e-6 accuracy the SPEC asks for), reduced over
//              the block in a fixed order, and leave the block once: plain stores (one
//              split), double atomicAdd, or (deterministic) a per-split workspace reduced
//              in a fixed order by a second kernel. Nothing of the size of sigma is stored.
#pragma once

#include <algorithm>
#include <climits>
#include <type_traits>

#include "adaptive_conv2d_kernels.cuh"

// Every launch goes through this macro so that testing/emulate_kernels.cpp can run the
// very same kernels on the CPU (one thread per CUDA thread) where no GPU is available.
#ifndef ADAPTIVE_CONV_LAUNCH
#define ADAPTIVE_CONV_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif

namespace adaptive_conv_ext {
namespace cuda {

namespace {

constexpr int kThreads = 256;  // threads per block, and the most output pixels per tile
constexpr int64_t kDefaultSmem = 48 * 1024;  // what a block gets without opting in
constexpr int64_t kMaxGridBlocks = (int64_t(1) << 31) - 1;

// ---------------------------------------------------------------------------------------
// Geometry as the kernels see it (32-bit: the planner checks every value fits).
struct Geom {
  int N, C, H, W, O, G, Cg, Og;
  int kH, kW, T, Tp;
  int sH, sW, pH, pW, dH, dW;
  int Ho, Wo;
};

struct FwdCfg {
  int toh, tow, P, bh, bw, box, tiles_h, tiles_w;
  int oct, n_ot, cch, tt;
  int off_beta, off_box, off_y;
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

// ---------------------------------------------------------------------------------------
// Scalar helpers.
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
struct FromAcc;
template <>
struct FromAcc<float> {
  static __device__ __forceinline__ float cvt(float v) { return v; }
};
template <>
struct FromAcc<double> {
  static __device__ __forceinline__ double cvt(double v) { return v; }
};
template <>
struct FromAcc<__half> {
  static __device__ __forceinline__ __half cvt(float v) { return __float2half_rn(v); }
};
template <>
struct FromAcc<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 cvt(float v) { return __float2bfloat16_rn(v); }
};

// Peels the fastest-varying coordinate off a flat 64-bit index: 32-bit division while
// the index fits (64-bit division is a called subroutine: slower and spills around the call).
__device__ __forceinline__ int peel(long long& r, int d) {
  int q;
  if (r <= 0x7fffffffLL) {
    const unsigned u = static_cast<unsigned>(r);
    const unsigned qq = u / static_cast<unsigned>(d);
    q = static_cast<int>(u - qq * static_cast<unsigned>(d));
    r = qq;
  } else {
    q = static_cast<int>(r % d);
    r /= d;
  }
  return q;
}

template <typename T>
__device__ __forceinline__ T ldg(const T* p) {
  return __ldg(p);
}

__device__ __forceinline__ float fma_acc(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_acc(double a, double b, double c) { return __fma_rn(a, b, c); }

// Exact tanh for float32/float64 (the 1e-6 / 1e-12 tolerances need it). The 16-bit
// types may use the MUFU approximation (max rel. error ~2^-11, inside their 5e-3/2e-2).
template <bool kFast>
__device__ __forceinline__ float tanh_acc(float x) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 750)
  if (kFast) {
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
  }
#endif
  return tanhf(x);
}
template <bool kFast>
__device__ __forceinline__ double tanh_acc(double x) {
  return tanh(x);
}

template <typename scalar_t>
struct FastTanh {
  static constexpr bool value = false;
};
template <>
struct FastTanh<__half> {
  static constexpr bool value = true;
};
template <>
struct FastTanh<__nv_bfloat16> {
  static constexpr bool value = true;
};

// 16-byte vector of accumulators, for broadcast loads of Q rows and patch rows from
// shared memory (rows are padded to a multiple of the vector length, Tp).
template <typename A, int N>
struct alignas(16) VecN {
  A v[N];
};
template <typename A>
struct VecOf {
  static constexpr int n = 16 / sizeof(A);
  using type = VecN<A, n>;
};

// ---------------------------------------------------------------------------------------
// Shared-memory staging, all threads of the block.

// Input box of `nch` channels starting at absolute channel c_first, zero outside the image.
template <typename index_t, typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_box(acc_t* __restrict__ xs, const scalar_t* __restrict__ input,
                                          const Geom& g, int n, int c_first, int nch, int ih0,
                                          int iw0, int bh, int bw) {
  const int box = bh * bw;
  const int total = nch * box;
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const int c = i / box;
    const int rr = i - c * box;
    const int y = rr / bw;
    const int x = rr - y * bw;
    const int ih = ih0 + y;
    const int iw = iw0 + x;
    acc_t v = acc_t(0);
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
      v = to_acc(ldg(input + ((static_cast<index_t>(n) * g.C + (c_first + c)) * g.H + ih) * g.W + iw));
    }
    xs[i] = v;
  }
}

// Q rows and beta for output channels [o_first, o_first+no) (absolute), local input
// channels [c0, c0+nc), kernel rows [t0, t0+nt). Row r = (ol*nc + cl)*nt + tl, Tp wide
// (padding zeroed).
template <typename index_t, typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_q(acc_t* __restrict__ qs, acc_t* __restrict__ bs,
                                        const scalar_t* __restrict__ weight,
                                        const scalar_t* __restrict__ kbias, const Geom& g,
                                        int o_first, int no, int c0, int nc, int t0, int nt,
                                        int T, int Tp) {
  const int rows = no * nc * nt;
  const int per_o = nc * nt;
  for (int i = threadIdx.x; i < rows * Tp; i += kThreads) {
    const int r = i / Tp;
    const int a = i - r * Tp;
    acc_t v = acc_t(0);
    if (a < T) {
      const int ol = r / per_o;
      const int rem = r - ol * per_o;
      const int cl = rem / nt;
      const int tl = rem - cl * nt;
      v = to_acc(ldg(weight + ((static_cast<index_t>(o_first + ol) * g.Cg + (c0 + cl)) * T + (t0 + tl)) * T + a));
    }
    qs[i] = v;
  }
  for (int r = threadIdx.x; r < rows; r += kThreads) {
    acc_t v = acc_t(0);
    if (kbias != nullptr) {
      const int ol = r / per_o;
      const int rem = r - ol * per_o;
      const int cl = rem / nt;
      const int tl = rem - cl * nt;
      v = to_acc(ldg(kbias + (static_cast<index_t>(o_first + ol) * g.Cg + (c0 + cl)) * T + (t0 + tl)));
    }
    bs[r] = v;
  }
}

// sigma for one Q row of a compile-time-size kernel, patch in registers.
template <int kT, int kTp, typename acc_t>
__device__ __forceinline__ acc_t sigma_static(const acc_t* __restrict__ qrow, acc_t beta,
                                              const acc_t (&xr)[kT]) {
  using V = VecOf<acc_t>;
  acc_t s = beta;
#pragma unroll
  for (int v = 0; v < kTp / V::n; ++v) {
    const typename V::type qv = *reinterpret_cast<const typename V::type*>(qrow + v * V::n);
#pragma unroll
    for (int j = 0; j < V::n; ++j) {
      if (v * V::n + j < kT) s = fma_acc(qv.v[j], xr[v * V::n + j], s);
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------
// Forward.
template <typename scalar_t, typename index_t, int KH, int KW>
__global__ void __launch_bounds__(kThreads)
adaptive_conv2d_fwd_kernel(const Geom g, const FwdCfg cfg, const scalar_t* __restrict__ input,
                           const scalar_t* __restrict__ weight,
                           const scalar_t* __restrict__ kbias, const scalar_t* __restrict__ bias,
                           scalar_t* __restrict__ out) {
  using acc_t = typename AccType<scalar_t>::type;
  using V = VecOf<acc_t>;
  constexpr bool kStatic = KH > 0;
  constexpr int kT = kStatic ? KH * KW : 1;
  constexpr int kTp = kStatic ? (kT + V::n - 1) / V::n * V::n : 1;
  constexpr bool kFast = FastTanh<scalar_t>::value;
  // Unrolling the kernel-row loop too would make 7x7 bodies of ~5000 FMAs: slow to
  // compile and register-hungry. Rows stay a loop there; taps within a row are unrolled.
  constexpr bool kFullT = kT <= 25;
  const int T = kStatic ? kT : g.T;
  const int Tp = kStatic ? kTp : g.Tp;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* const qs = reinterpret_cast<acc_t*>(smem_raw);  // [oct][cch][tt][Tp]
  acc_t* const bs = qs + cfg.off_beta;                     // [oct][cch][tt]
  acc_t* const xs = qs + cfg.off_box;                      // [cch][bh][bw]
  acc_t* const ys = qs + cfg.off_y;                        // [oct][P], one column per thread

  const int tid = threadIdx.x;
  const int py = tid / cfg.tow;
  const int px = tid - py * cfg.tow;
  const int pbase = py * g.sH * cfg.bw + px * g.sW;  // this pixel's patch origin in the box
  const int rstep = g.dH * cfg.bw;

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    long long r = item;
    const int ot = peel(r, cfg.n_ot);
    const int tx = peel(r, cfg.tiles_w);
    const int ty = peel(r, cfg.tiles_h);
    const int gi = peel(r, g.G);
    const int n = static_cast<int>(r);  // r < N after peeling

    const int o0 = ot * cfg.oct;
    const int oct_a = min(cfg.oct, g.Og - o0);
    const int oh = ty * cfg.toh + py;
    const int ow = tx * cfg.tow + px;
    const bool valid = tid < cfg.P && oh < g.Ho && ow < g.Wo;
    const int ih0 = ty * cfg.toh * g.sH - g.pH;
    const int iw0 = tx * cfg.tow * g.sW - g.pW;

    if (tid < cfg.P) {
      for (int ol = 0; ol < oct_a; ++ol) ys[ol * cfg.P + tid] = acc_t(0);
    }

    for (int c0 = 0; c0 < g.Cg; c0 += cfg.cch) {
      const int cch_a = min(cfg.cch, g.Cg - c0);
      for (int t0 = 0; t0 < T; t0 += cfg.tt) {
        const int tt_a = min(cfg.tt, T - t0);
        __syncthreads();  // the previous round's readers are done with xs/qs
        if (t0 == 0) {
          stage_box<index_t>(xs, input, g, n, gi * g.Cg + c0, cch_a, ih0, iw0, cfg.bh, cfg.bw);
        }
        stage_q<index_t>(qs, bs, weight, kbias, g, gi * g.Og + o0, oct_a, c0, cch_a, t0, tt_a, T, Tp);
        __syncthreads();
        if (!valid) continue;

        for (int cl = 0; cl < cch_a; ++cl) {
          const acc_t* const xb = xs + cl * cfg.box + pbase;
          if constexpr (kStatic) {
            // Static kernels always run with tt == T, t0 == 0 (the planner guarantees it).
            acc_t xr[kT];
#pragma unroll
            for (int ah = 0; ah < KH; ++ah) {
#pragma unroll
              for (int aw = 0; aw < KW; ++aw) xr[ah * KW + aw] = xb[ah * rstep + aw * g.dW];
            }
            for (int ol = 0; ol < oct_a; ++ol) {
              const acc_t* const q = qs + (ol * cch_a + cl) * kT * kTp;
              const acc_t* const b = bs + (ol * cch_a + cl) * kT;
              acc_t yv = acc_t(0);
#pragma unroll(kFullT ? kT : 1)
              for (int t = 0; t < kT; ++t) {
                const acc_t s = sigma_static<kT, kTp>(q + t * kTp, b[t], xr);
                acc_t xt;
                if constexpr (kFullT) {
                  xt = xr[t];
                } else {  // runtime t: read the box, never index the register array
                  xt = xb[(t / KW) * rstep + (t % KW) * g.dW];
                }
                yv = fma_acc(tanh_acc<kFast>(s), xt, yv);
              }
              ys[ol * cfg.P + tid] += yv;  // per-channel partials: a two-level sum
            }
          } else {
            for (int ol = 0; ol < oct_a; ++ol) {
              const acc_t* const q = qs + (ol * cch_a + cl) * tt_a * Tp;
              const acc_t* const b = bs + (ol * cch_a + cl) * tt_a;
              acc_t yv = acc_t(0);
              for (int tl = 0; tl < tt_a; ++tl) {
                const acc_t* const qr = q + tl * Tp;
                acc_t s = b[tl];
                int a = 0;
                for (int ah = 0; ah < g.kH; ++ah) {
                  const acc_t* const xrow = xb + ah * rstep;
                  for (int aw = 0; aw < g.kW; ++aw, ++a) s = fma_acc(qr[a], xrow[aw * g.dW], s);
                }
                const int t = t0 + tl;
                const int th = t / g.kW;
                const int tw = t - th * g.kW;
                yv = fma_acc(tanh_acc<kFast>(s), xb[th * rstep + tw * g.dW], yv);
              }
              ys[ol * cfg.P + tid] += yv;
            }
          }
        }
      }
    }

    if (valid) {
      for (int ol = 0; ol < oct_a; ++ol) {
        const int o = gi * g.Og + o0 + ol;
        acc_t v = ys[ol * cfg.P + tid];
        if (bias != nullptr) v += to_acc(ldg(bias + o));
        out[((static_cast<index_t>(n) * g.O + o) * g.Ho + oh) * g.Wo + ow] = FromAcc<scalar_t>::cvt(v);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Input gradient.
template <typename scalar_t, typename index_t, int KH, int KW>
__global__ void __launch_bounds__(kThreads)
adaptive_conv2d_bwd_input_kernel(const Geom g, const DxCfg cfg,
                                 const scalar_t* __restrict__ grad_out,
                                 const scalar_t* __restrict__ input,
                                 const scalar_t* __restrict__ weight,
                                 const scalar_t* __restrict__ kbias,
                                 typename AccType<scalar_t>::type* __restrict__ grad_in,
                                 typename AccType<scalar_t>::type* __restrict__ ws) {
  using acc_t = typename AccType<scalar_t>::type;
  using V = VecOf<acc_t>;
  constexpr bool kStatic = KH > 0;
  constexpr int kT = kStatic ? KH * KW : 1;
  constexpr int kTp = kStatic ? (kT + V::n - 1) / V::n * V::n : 1;
  constexpr bool kFast = FastTanh<scalar_t>::value;
  // Unrolling the kernel-row loop too would make 7x7 bodies of ~5000 FMAs: slow to
  // compile and register-hungry. Rows stay a loop there; taps within a row are unrolled.
  constexpr bool kFullT = kT <= 25;
  const int T = kStatic ? kT : g.T;
  const int Tp = kStatic ? kTp : g.Tp;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* const qs = reinterpret_cast<acc_t*>(smem_raw);  // [oq][tt][Tp]
  acc_t* const bs = qs + cfg.off_beta;                     // [oq][tt]
  acc_t* const xs = qs + cfg.off_box;                      // input box
  acc_t* const dxs = qs + cfg.off_dbox;                    // gradient box
  acc_t* const dxt = qs + cfg.off_dxt;                     // [P][Tp] patch gradient totals
  acc_t* const dxp = qs + cfg.off_dxp;                     // [P][Tp] per-channel partials (generic)

  const int tid = threadIdx.x;
  const int py = tid / cfg.tow;
  const int px = tid - py * cfg.tow;
  const int pbase = py * g.sH * cfg.bw + px * g.sW;
  const int rstep = g.dH * cfg.bw;
  const long long plane = static_cast<long long>(g.Ho) * g.Wo;

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    long long r = item;
    const int c_abs = peel(r, g.C);
    const int tx = peel(r, cfg.tiles_w);
    const int ty = peel(r, cfg.tiles_h);
    const int n = static_cast<int>(r);
    const int gi = c_abs / g.Cg;
    const int cl = c_abs - gi * g.Cg;

    const int oh = ty * cfg.toh + py;
    const int ow = tx * cfg.tow + px;
    const bool valid = tid < cfg.P && oh < g.Ho && ow < g.Wo;
    const int ih0 = ty * cfg.toh * g.sH - g.pH;
    const int iw0 = tx * cfg.tow * g.sW - g.pW;

    __syncthreads();  // the previous item's flush is done with dxs
    stage_box<index_t>(xs, input, g, n, c_abs, 1, ih0, iw0, cfg.bh, cfg.bw);
    for (int i = tid; i < cfg.box; i += kThreads) dxs[i] = acc_t(0);
    if (tid < cfg.P) {
      for (int a = 0; a < T; ++a) dxt[tid * Tp + a] = acc_t(0);
    }
    const acc_t* const xb = xs + pbase;
    // Formed for valid pixels only: (oh, ow) past the output could overflow a 32-bit index.
    const scalar_t* const gout =
        valid ? grad_out + (static_cast<index_t>(n) * g.O + gi * g.Og) * static_cast<index_t>(plane) +
                    (static_cast<index_t>(oh) * g.Wo + ow)
              : grad_out;

    for (int o0 = 0; o0 < g.Og; o0 += cfg.oq) {
      const int oq_a = min(cfg.oq, g.Og - o0);
      for (int t0 = 0; t0 < T; t0 += cfg.tt) {
        const int tt_a = min(cfg.tt, T - t0);
        __syncthreads();  // readers of the previous Q rows are done
        stage_q<index_t>(qs, bs, weight, kbias, g, gi * g.Og + o0, oq_a, cl, 1, t0, tt_a, T, Tp);
        __syncthreads();
        if (!valid) continue;

        acc_t* const tot = dxt + tid * Tp;
        if constexpr (kStatic) {
          acc_t xr[kT];
#pragma unroll
          for (int ah = 0; ah < KH; ++ah) {
#pragma unroll
            for (int aw = 0; aw < KW; ++aw) xr[ah * KW + aw] = xb[ah * rstep + aw * g.dW];
          }
          for (int ol = 0; ol < oq_a; ++ol) {
            const acc_t gv = to_acc(ldg(gout + static_cast<index_t>(o0 + ol) * static_cast<index_t>(plane)));
            const acc_t* const q = qs + ol * kT * kTp;
            const acc_t* const b = bs + ol * kT;
            acc_t dp[kT];  // this output channel's contribution (summed into tot: two levels)
#pragma unroll
            for (int a = 0; a < kT; ++a) dp[a] = acc_t(0);
#pragma unroll(kFullT ? kT : 1)
            for (int t = 0; t < kT; ++t) {
              const acc_t* const qrow = q + t * kTp;
              const acc_t s = sigma_static<kT, kTp>(qrow, b[t], xr);
              const acc_t k = tanh_acc<kFast>(s);
              acc_t xt;
              if constexpr (kFullT) {
                xt = xr[t];
                dp[t] = fma_acc(gv, k, dp[t]);  // direct term
              } else {
                // t is not a compile-time index here: keep xr/dp register arrays static.
                xt = xb[(t / KW) * rstep + (t % KW) * g.dW];
                tot[t] += gv * k;  // direct term, straight into the thread's total
              }
              const acc_t ds = gv * xt * fma_acc(-k, k, acc_t(1));  // dsigma
#pragma unroll
              for (int v = 0; v < kTp / V::n; ++v) {
                const typename V::type qv = *reinterpret_cast<const typename V::type*>(qrow + v * V::n);
#pragma unroll
                for (int j = 0; j < V::n; ++j) {
                  if (v * V::n + j < kT) dp[v * V::n + j] = fma_acc(ds, qv.v[j], dp[v * V::n + j]);
                }
              }
            }
#pragma unroll
            for (int a = 0; a < kT; ++a) tot[a] += dp[a];
          }
        } else {
          acc_t* const dp = dxp + tid * Tp;
          for (int ol = 0; ol < oq_a; ++ol) {
            const acc_t gv = to_acc(ldg(gout + static_cast<index_t>(o0 + ol) * static_cast<index_t>(plane)));
            const acc_t* const q = qs + ol * tt_a * Tp;
            const acc_t* const b = bs + ol * tt_a;
            for (int a = 0; a < T; ++a) dp[a] = acc_t(0);
            for (int tl = 0; tl < tt_a; ++tl) {
              const acc_t* const qr = q + tl * Tp;
              acc_t s = b[tl];
              int a = 0;
              for (int ah = 0; ah < g.kH; ++ah) {
                const acc_t* const xrow = xb + ah * rstep;
                for (int aw = 0; aw < g.kW; ++aw, ++a) s = fma_acc(qr[a], xrow[aw * g.dW], s);
              }
              const int t = t0 + tl;
              const int th = t / g.kW;
              const int tw = t - th * g.kW;
              const acc_t k = tanh_acc<kFast>(s);
              dp[t] = fma_acc(gv, k, dp[t]);
              const acc_t ds = gv * xb[th * rstep + tw * g.dW] * fma_acc(-k, k, acc_t(1));
              for (int a2 = 0; a2 < T; ++a2) dp[a2] = fma_acc(ds, qr[a2], dp[a2]);
            }
            for (int a = 0; a < T; ++a) tot[a] += dp[a];
          }
        }
      }
    }
    __syncthreads();  // dxs zeroing (by all threads) is done even when Og == 0

    // Scatter the patch gradients into the box, one tap per round: for a fixed tap the
    // pixel -> box map is injective, so a round has no collisions and the order of the
    // additions at every element is fixed (deterministic without shared atomics).
    for (int a = 0; a < T; ++a) {
      if (valid) {
        const int ah = a / g.kW;
        const int aw = a - ah * g.kW;
        dxs[pbase + ah * rstep + aw * g.dW] += dxt[tid * Tp + a];
      }
      __syncthreads();
    }

    if (cfg.mode == static_cast<int>(DxMode::kWorkspace)) {
      const index_t slot = ((static_cast<index_t>(n) * cfg.tiles_h + ty) * cfg.tiles_w + tx) * g.C + c_abs;
      acc_t* const dst = ws + slot * cfg.box;
      for (int i = tid; i < cfg.box; i += kThreads) dst[i] = dxs[i];
    } else {
      acc_t* const dst = grad_in + (static_cast<index_t>(n) * g.C + c_abs) * g.H * static_cast<index_t>(g.W);
      const bool store = cfg.mode == static_cast<int>(DxMode::kStore);
      for (int i = tid; i < cfg.box; i += kThreads) {
        const int y = i / cfg.bw;
        const int x = i - y * cfg.bw;
        const int ih = ih0 + y;
        const int iw = iw0 + x;
        if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
          acc_t* const p = dst + static_cast<index_t>(ih) * g.W + iw;
          if (store) {
            *p = dxs[i];
          } else {
            atomicAdd(p, dxs[i]);
          }
        }
      }
    }
  }
}

// Deterministic grad_input: each input element sums, in a fixed tile order, the
// workspace boxes of the (few) tiles whose halo box covers it.
template <typename acc_t, typename index_t>
__global__ void __launch_bounds__(kThreads)
adaptive_conv2d_gather_dx_kernel(const Geom g, const DxCfg cfg, const acc_t* __restrict__ ws,
                                 acc_t* __restrict__ grad_in, long long total) {
  const int sy = cfg.toh * g.sH;  // box origins step by a tile of output rows
  const int sx = cfg.tow * g.sW;
  for (long long idx = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; idx < total;
       idx += static_cast<long long>(gridDim.x) * kThreads) {
    long long r = idx;
    const int iw = peel(r, g.W);
    const int ih = peel(r, g.H);
    const int ch = peel(r, g.C);
    const int n = static_cast<int>(r);
    const int ay = ih + g.pH;  // position relative to the padded origin, >= 0
    const int ax = iw + g.pW;
    const int ty_hi = min(cfg.tiles_h - 1, ay / sy);
    const int ty_lo = ay - cfg.bh + 1 > 0 ? (ay - cfg.bh + sy) / sy : 0;
    const int tx_hi = min(cfg.tiles_w - 1, ax / sx);
    const int tx_lo = ax - cfg.bw + 1 > 0 ? (ax - cfg.bw + sx) / sx : 0;
    acc_t sum = acc_t(0);
    for (int ty = ty_lo; ty <= ty_hi; ++ty) {
      for (int tx = tx_lo; tx <= tx_hi; ++tx) {
        const index_t slot = ((static_cast<index_t>(n) * cfg.tiles_h + ty) * cfg.tiles_w + tx) * g.C + ch;
        sum += ws[slot * cfg.box + (ay - ty * sy) * cfg.bw + (ax - tx * sx)];
      }
    }
    grad_in[static_cast<index_t>(idx)] = sum;
  }
}

// ---------------------------------------------------------------------------------------
// Weight and kernel_bias gradients. AW = dQ columns a thread owns in the reduction phase.
template <typename scalar_t, typename index_t, int KH, int KW, int AW>
__global__ void __launch_bounds__(kThreads)
adaptive_conv2d_bwd_weight_kernel(const Geom g, const DwCfg cfg,
                                  const scalar_t* __restrict__ grad_out,
                                  const scalar_t* __restrict__ input,
                                  const scalar_t* __restrict__ weight,
                                  const scalar_t* __restrict__ kbias, double* __restrict__ gw,
                                  double* __restrict__ gkb, double* __restrict__ ws_w,
                                  double* __restrict__ ws_kb) {
  using acc_t = typename AccType<scalar_t>::type;
  using V = VecOf<acc_t>;
  constexpr bool kStatic = KH > 0;
  constexpr int kT = kStatic ? KH * KW : 1;
  constexpr int kTp = kStatic ? (kT + V::n - 1) / V::n * V::n : 1;
  constexpr bool kFast = FastTanh<scalar_t>::value;
  constexpr int kAV = (AW + V::n - 1) / V::n;  // vectors per owned column range
  constexpr bool kFullT = kT <= 25;  // see the forward kernel
  const int T = kStatic ? kT : g.T;
  const int Tp = kStatic ? kTp : g.Tp;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* const qs = reinterpret_cast<acc_t*>(smem_raw);  // [oq][tt][Tp], resident
  acc_t* const bs = qs + cfg.off_beta;                     // [oq][tt]
  acc_t* const xs = qs + cfg.off_box;                      // input box of one channel
  acc_t* const xcol = qs + cfg.off_xcol;                   // [P][Tp] patches of the tile
  acc_t* const dsm = qs + cfg.off_ds;                      // [P][rs] dsigma of the tile
  double* const part = reinterpret_cast<double*>(xcol);    // [ks][jobs][AW+1], after the loop

  const int tid = threadIdx.x;
  const int py = tid / cfg.tow;
  const int px = tid - py * cfg.tow;
  const int pbase = py * g.sH * cfg.bw + px * g.sW;
  const int rstep = g.dH * cfg.bw;
  const long long plane = static_cast<long long>(g.Ho) * g.Wo;

  // Reduction-phase role: job = (row, column group), row = (ol, tl); ks = pixel stride.
  const int job = tid % cfg.jobs;
  const int ks = tid / cfg.jobs;
  const int row = job / cfg.ncg;
  const int cg = job - row * cfg.ncg;
  const int a0 = cg * AW;

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    long long r = item;
    const int ot = peel(r, cfg.n_ot);
    const int tc = peel(r, cfg.n_tc);
    const int c_abs = peel(r, g.C);
    const long long split = r;
    const int gi = c_abs / g.Cg;
    const int cl = c_abs - gi * g.Cg;
    const int o0 = ot * cfg.oq;
    const int oq_a = min(cfg.oq, g.Og - o0);
    const int t0 = tc * cfg.tt;
    const int tt_a = min(cfg.tt, T - t0);
    const int rows_a = oq_a * tt_a;
    const bool reducer = ks < cfg.ks && row < rows_a;
    const int ol_r = reducer ? row / tt_a : 0;
    const int tl_r = reducer ? row - ol_r * tt_a : 0;

    __syncthreads();  // the previous item's final reduction is done with part[] / qs
    stage_q<index_t>(qs, bs, weight, kbias, g, gi * g.Og + o0, oq_a, cl, 1, t0, tt_a, T, Tp);

    double run[AW];  // running sums over tiles in double: long float32 sums lose accuracy
#pragma unroll
    for (int j = 0; j < AW; ++j) run[j] = 0.0;
    double brun = 0.0;

    for (long long w = split; w < cfg.work_items; w += cfg.splits) {
      long long rr = w;
      const int tx = peel(rr, cfg.tiles_w);
      const int ty = peel(rr, cfg.tiles_h);
      const int n = static_cast<int>(rr);
      const int oh = ty * cfg.toh + py;
      const int ow = tx * cfg.tow + px;
      const bool valid = tid < cfg.P && oh < g.Ho && ow < g.Wo;
      const int ih0 = ty * cfg.toh * g.sH - g.pH;
      const int iw0 = tx * cfg.tow * g.sW - g.pW;

      // Nobody reads xs after the previous iteration's middle barrier, so no barrier here.
      stage_box<index_t>(xs, input, g, n, c_abs, 1, ih0, iw0, cfg.bh, cfg.bw);
      __syncthreads();  // also: everyone is done with xcol/dsm of the previous iteration

      if (tid < cfg.P) {
        acc_t* const xc = xcol + tid * Tp;
        acc_t* const dsr = dsm + tid * cfg.rs;
        if (valid) {
          const acc_t* const xb = xs + pbase;
          const scalar_t* const gout =
              grad_out + (static_cast<index_t>(n) * g.O + gi * g.Og + o0) * static_cast<index_t>(plane) +
              (static_cast<index_t>(oh) * g.Wo + ow);
          if constexpr (kStatic) {
            acc_t xr[kT];
#pragma unroll
            for (int ah = 0; ah < KH; ++ah) {
#pragma unroll
              for (int aw = 0; aw < KW; ++aw) xr[ah * KW + aw] = xb[ah * rstep + aw * g.dW];
            }
#pragma unroll
            for (int a = 0; a < kTp; ++a) xc[a] = a < kT ? xr[a] : acc_t(0);
            for (int ol = 0; ol < oq_a; ++ol) {
              const acc_t gv = to_acc(ldg(gout + static_cast<index_t>(ol) * static_cast<index_t>(plane)));
              const acc_t* const q = qs + ol * kT * kTp;
              const acc_t* const b = bs + ol * kT;
#pragma unroll(kFullT ? kT : 1)
              for (int t = 0; t < kT; ++t) {
                const acc_t s = sigma_static<kT, kTp>(q + t * kTp, b[t], xr);
                const acc_t k = tanh_acc<kFast>(s);
                acc_t xt;
                if constexpr (kFullT) {
                  xt = xr[t];
                } else {
                  xt = xc[t];
                }
                dsr[ol * kT + t] = gv * xt * fma_acc(-k, k, acc_t(1));
              }
            }
          } else {
            int a = 0;
            for (int ah = 0; ah < g.kH; ++ah) {
              for (int aw = 0; aw < g.kW; ++aw, ++a) xc[a] = xb[ah * rstep + aw * g.dW];
            }
            for (; a < Tp; ++a) xc[a] = acc_t(0);
            for (int ol = 0; ol < oq_a; ++ol) {
              const acc_t gv = to_acc(ldg(gout + static_cast<index_t>(ol) * static_cast<index_t>(plane)));
              const acc_t* const q = qs + ol * tt_a * Tp;
              const acc_t* const b = bs + ol * tt_a;
              for (int tl = 0; tl < tt_a; ++tl) {
                const acc_t* const qr = q + tl * Tp;
                acc_t s = b[tl];
                for (int a2 = 0; a2 < T; ++a2) s = fma_acc(qr[a2], xc[a2], s);
                const acc_t k = tanh_acc<kFast>(s);
                dsr[ol * tt_a + tl] = gv * xc[t0 + tl] * fma_acc(-k, k, acc_t(1));
              }
            }
          }
        } else {
          // Pixels outside the output contribute nothing (and must not carry the image's
          // NaN/Inf into dQ through 0 * x).
          for (int a = 0; a < Tp; ++a) xc[a] = acc_t(0);
          for (int q = 0; q < rows_a; ++q) dsr[q] = acc_t(0);
        }
      }
      __syncthreads();

      if (reducer) {
        acc_t pa[AW];
#pragma unroll
        for (int j = 0; j < AW; ++j) pa[j] = acc_t(0);
        acc_t pb = acc_t(0);
        for (int p = ks; p < cfg.P; p += cfg.ks) {
          const acc_t d = dsm[p * cfg.rs + row];
          const acc_t* const xc = xcol + p * Tp + a0;
#pragma unroll
          for (int v = 0; v < kAV; ++v) {
            if (a0 + v * V::n < T) {  // keep the vector load inside the padded row
              const typename V::type xv = *reinterpret_cast<const typename V::type*>(xc + v * V::n);
#pragma unroll
              for (int j = 0; j < V::n; ++j) {
                if (v * V::n + j < AW) pa[v * V::n + j] = fma_acc(d, xv.v[j], pa[v * V::n + j]);
              }
            }
          }
          pb += d;
        }
#pragma unroll
        for (int j = 0; j < AW; ++j) run[j] += static_cast<double>(pa[j]);
        brun += static_cast<double>(pb);
      }
    }

    __syncthreads();  // xcol/dsm are free: part[] reuses them
    if (reducer) {
      double* const dst = part + (static_cast<long long>(ks) * cfg.jobs + job) * (AW + 1);
#pragma unroll
      for (int j = 0; j < AW; ++j) dst[j] = run[j];
      dst[AW] = brun;
    }
    __syncthreads();
    if (tid < cfg.jobs && row < rows_a) {  // here ks == 0 and job == tid
      const int o = gi * g.Og + o0 + ol_r;
      const int t = t0 + tl_r;
      const index_t wrow = ((static_cast<index_t>(o) * g.Cg + cl) * T + t) * T;
      const index_t E = static_cast<index_t>(g.O) * g.Cg * T * T;
      const index_t Eb = static_cast<index_t>(g.O) * g.Cg * T;
#pragma unroll
      for (int j = 0; j < AW; ++j) {
        const int a = a0 + j;
        if (a < T) {
          double v = 0.0;
          for (int k = 0; k < cfg.ks; ++k) v += part[(static_cast<long long>(k) * cfg.jobs + job) * (AW + 1) + j];
          if (cfg.mode == static_cast<int>(DwMode::kStore)) {
            gw[wrow + a] = v;
          } else if (cfg.mode == static_cast<int>(DwMode::kAtomic)) {
            atomicAdd(gw + wrow + a, v);
          } else {
            ws_w[static_cast<index_t>(split) * E + wrow + a] = v;
          }
        }
      }
      if (cg == 0) {
        double v = 0.0;
        for (int k = 0; k < cfg.ks; ++k) v += part[(static_cast<long long>(k) * cfg.jobs + job) * (AW + 1) + AW];
        const index_t bi = (static_cast<index_t>(o) * g.Cg + cl) * T + t;
        if (cfg.mode == static_cast<int>(DwMode::kStore)) {
          gkb[bi] = v;
        } else if (cfg.mode == static_cast<int>(DwMode::kAtomic)) {
          atomicAdd(gkb + bi, v);
        } else {
          ws_kb[static_cast<index_t>(split) * Eb + bi] = v;
        }
      }
    }
  }
}

// Deterministic reduction of per-split partials, in split order.
__global__ void __launch_bounds__(kThreads)
adaptive_conv2d_reduce_splits_kernel(const double* __restrict__ ws, double* __restrict__ out,
                                     long long E, long long S) {
  for (long long e = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; e < E;
       e += static_cast<long long>(gridDim.x) * kThreads) {
    double s = 0.0;
    for (long long k = 0; k < S; ++k) s += ws[k * E + e];
    out[e] = s;
  }
}

// ---------------------------------------------------------------------------------------
// Launchers.

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t align_up(int64_t v, int64_t a) { return ceil_div(v, a) * a; }

inline Geom make_geom(const AdaptiveConvShape& s, int64_t vec) {
  Geom g;
  g.N = static_cast<int>(s.N);
  g.C = static_cast<int>(s.C);
  g.H = static_cast<int>(s.H);
  g.W = static_cast<int>(s.W);
  g.O = static_cast<int>(s.O);
  g.G = static_cast<int>(s.groups);
  g.Cg = static_cast<int>(s.C / s.groups);
  g.Og = static_cast<int>(s.O / s.groups);
  g.kH = static_cast<int>(s.kH);
  g.kW = static_cast<int>(s.kW);
  g.T = static_cast<int>(s.kH * s.kW);
  g.Tp = static_cast<int>(align_up(s.kH * s.kW, vec));
  g.sH = static_cast<int>(s.sH);
  g.sW = static_cast<int>(s.sW);
  g.pH = static_cast<int>(s.pH);
  g.pW = static_cast<int>(s.pW);
  g.dH = static_cast<int>(s.dH);
  g.dW = static_cast<int>(s.dW);
  g.Ho = static_cast<int>(s.Ho);
  g.Wo = static_cast<int>(s.Wo);
  return g;
}

template <typename K>
cudaError_t prepare_smem(K kernel, int bytes) {
  if (bytes <= kDefaultSmem) return cudaSuccess;
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                              cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

inline unsigned grid_for(long long items) {
  return static_cast<unsigned>(std::min<long long>(std::max<long long>(items, 1), kMaxGridBlocks));
}

template <typename scalar_t, typename index_t>
constexpr bool kStaticVariants =
    std::is_same<index_t, int32_t>::value && !std::is_same<scalar_t, double>::value;

template <typename scalar_t, typename index_t>
using FwdKernel = void (*)(Geom, FwdCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                           const scalar_t*, scalar_t*);

template <typename scalar_t, typename index_t>
FwdKernel<scalar_t, index_t> pick_fwd(bool st, int k) {
  // Giant (int64-indexed) problems and float64 (there for accuracy and gradcheck, not
  // speed; its 7x7 bodies would need > 255 registers) use only the generic kernel.
  if constexpr (kStaticVariants<scalar_t, index_t>) {
    if (st && k == 3) return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 3, 3>;
    if (st && k == 5) return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 5, 5>;
    if (st && k == 7) return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 7, 7>;
  }
  return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 0, 0>;
}

template <typename scalar_t, typename index_t>
using DxKernel = void (*)(Geom, DxCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                          const scalar_t*, typename AccType<scalar_t>::type*,
                          typename AccType<scalar_t>::type*);

template <typename scalar_t, typename index_t>
DxKernel<scalar_t, index_t> pick_dx(bool st, int k) {
  if constexpr (kStaticVariants<scalar_t, index_t>) {
    if (st && k == 3) return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 3, 3>;
    if (st && k == 5) return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 5, 5>;
    if (st && k == 7) return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 7, 7>;
  }
  return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 0, 0>;
}

template <typename scalar_t, typename index_t>
using DwKernel = void (*)(Geom, DwCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                          const scalar_t*, double*, double*, double*, double*);

template <typename scalar_t, typename index_t>
DwKernel<scalar_t, index_t> pick_dw(bool st, int k) {
  // AW (columns per reduction thread) must match plan_backward: 9, 25, 28 and 8 (generic).
  if constexpr (kStaticVariants<scalar_t, index_t>) {
    if (st && k == 3) return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 3, 3, 9>;
    if (st && k == 5) return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 5, 5, 25>;
    if (st && k == 7) return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 7, 7, 28>;
  }
  return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 0, 0, 8>;
}

}  // namespace

template <typename scalar_t, typename index_t>
cudaError_t launch_forward(const AdaptiveConvShape& s, const ForwardPlan& plan,
                           const scalar_t* input, const scalar_t* weight,
                           const scalar_t* kernel_bias, const scalar_t* bias, scalar_t* output,
                           cudaStream_t stream) {
  using acc_t = typename AccType<scalar_t>::type;
  const Geom g = make_geom(s, 16 / sizeof(acc_t));
  const TileGeom& t = plan.tile;
  FwdCfg c;
  c.toh = t.toh;
  c.tow = t.tow;
  c.P = t.toh * t.tow;
  c.bh = t.bh;
  c.bw = t.bw;
  c.box = t.bh * t.bw;
  c.tiles_h = static_cast<int>(t.tiles_h);
  c.tiles_w = static_cast<int>(t.tiles_w);
  c.oct = plan.oct;
  c.n_ot = static_cast<int>(ceil_div(g.Og, plan.oct));
  c.cch = plan.cch;
  c.tt = plan.tt;
  c.off_beta = static_cast<int>(plan.off_beta);
  c.off_box = static_cast<int>(plan.off_box);
  c.off_y = static_cast<int>(plan.off_y);
  c.items = static_cast<long long>(s.N) * s.groups * c.n_ot * t.tiles_h * t.tiles_w;
  if (c.items == 0) return cudaSuccess;
  if (plan.static_taps && !kStaticVariants<scalar_t, index_t>) return cudaErrorInvalidValue;  // planner bug
  const auto kernel = pick_fwd<scalar_t, index_t>(plan.static_taps, g.kH);
  cudaError_t e = prepare_smem(kernel, plan.smem_bytes);
  if (e != cudaSuccess) return e;
  ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.smem_bytes, stream, g, c, input, weight,
                       kernel_bias, bias, output);
  return cudaGetLastError();
}

template <typename scalar_t, typename index_t>
cudaError_t launch_backward(const AdaptiveConvShape& s, const BackwardPlan& plan,
                            const BackwardBuffers<scalar_t>& buf, cudaStream_t stream) {
  using acc_t = typename AccType<scalar_t>::type;
  const Geom g = make_geom(s, 16 / sizeof(acc_t));
  cudaError_t e = cudaSuccess;

  if (plan.need_input && s.N > 0 && s.C > 0) {
    const TileGeom& t = plan.xtile;
    DxCfg c;
    c.toh = t.toh;
    c.tow = t.tow;
    c.P = t.toh * t.tow;
    c.bh = t.bh;
    c.bw = t.bw;
    c.box = t.bh * t.bw;
    c.tiles_h = static_cast<int>(t.tiles_h);
    c.tiles_w = static_cast<int>(t.tiles_w);
    c.oq = plan.x_oq;
    c.tt = plan.x_tt;
    c.off_beta = static_cast<int>(plan.x_off_beta);
    c.off_box = static_cast<int>(plan.x_off_box);
    c.off_dbox = static_cast<int>(plan.x_off_dbox);
    c.off_dxt = static_cast<int>(plan.x_off_dxt);
    c.off_dxp = static_cast<int>(plan.x_off_dxp);
    c.mode = static_cast<int>(plan.dx_mode);
    c.items = static_cast<long long>(s.N) * s.C * t.tiles_h * t.tiles_w;
    if (plan.x_static && !kStaticVariants<scalar_t, index_t>) return cudaErrorInvalidValue;
    const auto kernel = pick_dx<scalar_t, index_t>(plan.x_static, g.kH);
    e = prepare_smem(kernel, plan.x_smem);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.x_smem, stream, g, c, buf.grad_output,
                         buf.input, buf.weight, buf.kernel_bias, buf.grad_input, buf.dx_workspace);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (plan.dx_mode == DxMode::kWorkspace) {
      const long long total = static_cast<long long>(s.N) * s.C * s.H * s.W;
      const long long blocks = std::min<long long>(ceil_div(total, kThreads), 65536LL * 16);
      ADAPTIVE_CONV_LAUNCH((adaptive_conv2d_gather_dx_kernel<acc_t, index_t>), grid_for(blocks), kThreads, 0,
                           stream, g, c, buf.dx_workspace, buf.grad_input, total);
      e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
  }

  const long long E = static_cast<long long>(s.O) * (s.C / s.groups) * s.kH * s.kW * s.kH * s.kW;
  if (plan.need_weight && s.N > 0 && E > 0) {
    const TileGeom& t = plan.wtile;
    DwCfg c;
    c.toh = t.toh;
    c.tow = t.tow;
    c.P = t.toh * t.tow;
    c.bh = t.bh;
    c.bw = t.bw;
    c.box = t.bh * t.bw;
    c.tiles_h = static_cast<int>(t.tiles_h);
    c.tiles_w = static_cast<int>(t.tiles_w);
    c.oq = plan.w_oq;
    c.n_ot = static_cast<int>(ceil_div(g.Og, plan.w_oq));
    c.tt = plan.w_tt;
    c.n_tc = static_cast<int>(ceil_div(g.T, plan.w_tt));
    c.ncg = plan.w_ncg;
    c.jobs = plan.w_jobs;
    c.ks = plan.w_ks;
    c.rs = plan.w_rs;
    c.off_beta = static_cast<int>(plan.w_off_beta);
    c.off_box = static_cast<int>(plan.w_off_box);
    c.off_xcol = static_cast<int>(plan.w_off_xcol);
    c.off_ds = static_cast<int>(plan.w_off_ds);
    c.mode = static_cast<int>(plan.dw_mode);
    c.splits = plan.w_splits;
    c.work_items = static_cast<long long>(s.N) * t.tiles_h * t.tiles_w;
    c.items = static_cast<long long>(c.n_ot) * c.n_tc * s.C * c.splits;
    if (plan.w_static && !kStaticVariants<scalar_t, index_t>) return cudaErrorInvalidValue;
    const auto kernel = pick_dw<scalar_t, index_t>(plan.w_static, g.kH);
    e = prepare_smem(kernel, plan.w_smem);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.w_smem, stream, g, c, buf.grad_output,
                         buf.input, buf.weight, buf.kernel_bias, buf.grad_weight, buf.grad_kernel_bias,
                         buf.dw_workspace, buf.dkb_workspace);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (plan.dw_mode == DwMode::kWorkspace) {
      const long long Eb = static_cast<long long>(s.O) * (s.C / s.groups) * s.kH * s.kW;
      ADAPTIVE_CONV_LAUNCH(adaptive_conv2d_reduce_splits_kernel,
                           grid_for(std::min<long long>(ceil_div(E, kThreads), 1 << 20)), kThreads, 0, stream,
                           buf.dw_workspace, buf.grad_weight, E, c.splits);
      e = cudaGetLastError();
      if (e != cudaSuccess) return e;
      ADAPTIVE_CONV_LAUNCH(adaptive_conv2d_reduce_splits_kernel,
                           grid_for(std::min<long long>(ceil_div(Eb, kThreads), 1 << 20)), kThreads, 0, stream,
                           buf.dkb_workspace, buf.grad_kernel_bias, Eb, c.splits);
      e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
  }
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace adaptive_conv_ext
