// Shared-memory staging of input boxes and Q rows (all threads of a block), each thread's
// patch in the box, and sigma of one Q row against a patch held in registers.
#pragma once

#include "common.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------
// Shared-memory staging, all threads of the block.

// Input box of `nch` channels starting at absolute channel c_first, zero outside the image.
template <typename dst_t, typename scalar_t>
__device__ __forceinline__ dst_t stage_cvt(scalar_t v) {
  if constexpr (std::is_same<dst_t, scalar_t>::value) {
    return v;  // the tensor-core kernels stage 16-bit values as they are
  } else {
    return to_acc(v);
  }
}

// Channel c of the box goes to xs[c * cstride ...] (cstride >= bh * bw), as dst_t: the
// accumulator type (scalar kernels) or the input's own 16-bit type (tensor-core kernels).
template <typename index_t, typename scalar_t, typename dst_t>
__device__ __forceinline__ void stage_box(dst_t* __restrict__ xs, const scalar_t* __restrict__ input,
                                          const Geom& g, int n, int c_first, int nch, int ih0,
                                          int iw0, int bh, int bw, int cstride) {
  const int box = bh * bw;
  const int total = nch * box;
  int i = threadIdx.x;
  if (i >= total) return;
  // (c, y, x) of element i, divided out once and then stepped by kThreads = sc boxes + sy rows
  // + sx columns with carries: per element, two divisions cost more than the copy itself.
  int c = i / box, y = (i - c * box) / bw, x = i - c * box - y * bw;
  const int sc = kThreads / box, sy = (kThreads - sc * box) / bw, sx = kThreads - sc * box - sy * bw;
  for (; i < total; i += kThreads) {
    const int ih = ih0 + y;
    const int iw = iw0 + x;
    dst_t v{};
    if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
      v = stage_cvt<dst_t>(ldg(input + ((static_cast<index_t>(n) * g.C + (c_first + c)) * g.H + ih) * g.W + iw));
    }
    xs[c * cstride + y * bw + x] = v;
    x += sx;
    y += sy;
    c += sc;
    if (x >= bw) {
      x -= bw;
      ++y;
    }
    if (y >= bh) {  // y < 2 bh here: sy * bw + sx < box
      y -= bh;
      ++c;
    }
  }
}
template <typename index_t, typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_box(acc_t* __restrict__ xs, const scalar_t* __restrict__ input,
                                          const Geom& g, int n, int c_first, int nch, int ih0,
                                          int iw0, int bh, int bw) {
  stage_box<index_t>(xs, input, g, n, c_first, nch, ih0, iw0, bh, bw, bh * bw);
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
// A scalar kernel's thread (one output pixel of a tile of cfg.tow columns): its pixel in
// the tile (py, px), the origin of its patch in the staged box (pbase) and the box's step
// from one kernel row to the next (rstep).
struct ThreadPatch {
  int tid, py, px, pbase, rstep;
};
template <typename Cfg>
__device__ __forceinline__ ThreadPatch thread_patch(const Geom& g, const Cfg& cfg) {
  const int tid = threadIdx.x;
  const int py = tid / cfg.tow;
  const int px = tid - py * cfg.tow;
  return {tid, py, px, py * g.sH * cfg.bw + px * g.sW, g.dH * cfg.bw};
}

// xr[ah * KW + aw] = the thread's static KH x KW patch, read from the box at xb.
template <int KH, int KW, typename acc_t>
__device__ __forceinline__ void load_patch(acc_t (&xr)[KH * KW], const acc_t* xb, int rstep, int dW) {
#pragma unroll
  for (int ah = 0; ah < KH; ++ah) {
#pragma unroll
    for (int aw = 0; aw < KW; ++aw) xr[ah * KW + aw] = xb[ah * rstep + aw * dW];
  }
}

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
