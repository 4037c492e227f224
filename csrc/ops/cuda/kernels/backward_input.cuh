// grad_input kernel and the deterministic gather of its per-tile workspace boxes.
#pragma once

#include "tile_loaders.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------
// Input gradient.
template <typename scalar_t, typename index_t, int KH, int KW>
__global__ void __launch_bounds__(kThreads, scalar_min_blocks(ScalarKernel::kGradInput, KH))
adaptive_conv2d_bwd_input_kernel(const Geom g, const DxCfg cfg,
                                 const scalar_t* __restrict__ grad_out,
                                 const scalar_t* __restrict__ input,
                                 const scalar_t* __restrict__ weight,
                                 const scalar_t* __restrict__ kbias,
                                 typename AccType<scalar_t>::type* __restrict__ grad_in,
                                 typename AccType<scalar_t>::type* __restrict__ ws) {
  using K = ScalarKernelTraits<scalar_t, KH, KW>;
  using acc_t = typename K::acc_t;
  using V = typename K::V;
  const int T = K::kStatic ? K::kT : g.T, Tp = K::kStatic ? K::kTp : g.Tp;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* const qs = reinterpret_cast<acc_t*>(smem_raw);  // [oq][tt][Tp]
  acc_t* const bs = qs + cfg.off_beta;                     // [oq][tt]
  acc_t* const xs = qs + cfg.off_box;                      // input box
  acc_t* const dxs = qs + cfg.off_dbox;                    // gradient box
  acc_t* const dxt = qs + cfg.off_dxt;                     // [P][Tp] patch gradient totals
  acc_t* const dxp = qs + cfg.off_dxp;                     // [P][Tp] per-channel partials (generic)

  const auto [tid, py, px, pbase, rstep] = thread_patch(g, cfg);
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
        if constexpr (K::kStatic) {
          acc_t xr[K::kT];
          load_patch<KH, KW>(xr, xb, rstep, g.dW);
          for (int ol = 0; ol < oq_a; ++ol) {
            const acc_t gv = to_acc(ldg(gout + static_cast<index_t>(o0 + ol) * static_cast<index_t>(plane)));
            const acc_t* const q = qs + ol * K::kT * K::kTp;
            const acc_t* const b = bs + ol * K::kT;
            acc_t dp[K::kT];  // this output channel's contribution (summed into tot: two levels)
#pragma unroll
            for (int a = 0; a < K::kT; ++a) dp[a] = acc_t(0);
#pragma unroll(K::kFullT ? K::kT : 1)
            for (int t = 0; t < K::kT; ++t) {
              const acc_t* const qrow = q + t * K::kTp;
              const acc_t s = sigma_static<K::kT, K::kTp>(qrow, b[t], xr);
              const acc_t k = tanh_acc<K::kFast>(s);
              acc_t xt;
              if constexpr (K::kFullT) {
                xt = xr[t];
                dp[t] = fma_acc(gv, k, dp[t]);  // direct term
              } else {
                // t is not a compile-time index here: keep xr/dp register arrays static.
                xt = xb[(t / KW) * rstep + (t % KW) * g.dW];
                tot[t] += gv * k;  // direct term, straight into the thread's total
              }
              const acc_t ds = gv * xt * fma_acc(-k, k, acc_t(1));  // dsigma
#pragma unroll
              for (int v = 0; v < K::kTp / V::n; ++v) {
                const typename V::type qv = *reinterpret_cast<const typename V::type*>(qrow + v * V::n);
#pragma unroll
                for (int j = 0; j < V::n; ++j) {
                  if (v * V::n + j < K::kT) dp[v * V::n + j] = fma_acc(ds, qv.v[j], dp[v * V::n + j]);
                }
              }
            }
#pragma unroll
            for (int a = 0; a < K::kT; ++a) tot[a] += dp[a];
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
              const acc_t k = tanh_acc<K::kFast>(s);
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

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
