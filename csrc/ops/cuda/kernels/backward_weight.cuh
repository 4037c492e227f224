// grad_weight / grad_kernel_bias kernel and the fixed-order reduction of per-split partials.
#pragma once

#include "tile_loaders.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------
// Weight and kernel_bias gradients. AW = dQ columns a thread owns in the reduction phase.
template <typename scalar_t, typename index_t, int KH, int KW, int AW>
__global__ void __launch_bounds__(kThreads, scalar_min_blocks(ScalarKernel::kGradWeight, KH))
adaptive_conv2d_bwd_weight_kernel(const Geom g, const DwCfg cfg,
                                  const scalar_t* __restrict__ grad_out,
                                  const scalar_t* __restrict__ input,
                                  const scalar_t* __restrict__ weight,
                                  const scalar_t* __restrict__ kbias, double* __restrict__ gw,
                                  double* __restrict__ gkb, double* __restrict__ ws_w,
                                  double* __restrict__ ws_kb) {
  using K = ScalarKernelTraits<scalar_t, KH, KW>;
  using acc_t = typename K::acc_t;
  using V = typename K::V;
  const int T = K::kStatic ? K::kT : g.T, Tp = K::kStatic ? K::kTp : g.Tp;
  constexpr int kAV = (AW + V::n - 1) / V::n;  // vectors per owned column range

  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* const qs = reinterpret_cast<acc_t*>(smem_raw);  // [oq][tt][Tp], resident
  acc_t* const bs = qs + cfg.off_beta;                     // [oq][tt]
  acc_t* const xs = qs + cfg.off_box;                      // input box of one channel
  acc_t* const xcol = qs + cfg.off_xcol;                   // [P][Tp] patches of the tile
  acc_t* const dsm = qs + cfg.off_ds;                      // [P][rs] dsigma of the tile
  double* const part = reinterpret_cast<double*>(xcol);    // [ks][jobs][AW+1], after the loop

  const auto [tid, py, px, pbase, rstep] = thread_patch(g, cfg);
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
          if constexpr (K::kStatic) {
            acc_t xr[K::kT];
            load_patch<KH, KW>(xr, xb, rstep, g.dW);
#pragma unroll
            for (int a = 0; a < K::kTp; ++a) xc[a] = a < K::kT ? xr[a] : acc_t(0);
            for (int ol = 0; ol < oq_a; ++ol) {
              const acc_t gv = to_acc(ldg(gout + static_cast<index_t>(ol) * static_cast<index_t>(plane)));
              const acc_t* const q = qs + ol * K::kT * K::kTp;
              const acc_t* const b = bs + ol * K::kT;
#pragma unroll(K::kFullT ? K::kT : 1)
              for (int t = 0; t < K::kT; ++t) {
                const acc_t s = sigma_static<K::kT, K::kTp>(q + t * K::kTp, b[t], xr);
                const acc_t k = tanh_acc<K::kFast>(s);
                acc_t xt;
                if constexpr (K::kFullT) {
                  xt = xr[t];
                } else {
                  xt = xc[t];
                }
                dsr[ol * K::kT + t] = gv * xt * fma_acc(-k, k, acc_t(1));
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
                const acc_t k = tanh_acc<K::kFast>(s);
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

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
