// Forward kernel, scalar path (one output pixel per thread; every dtype).
#pragma once

#include "tile_loaders.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------
// Forward.
template <typename scalar_t, typename index_t, int KH, int KW>
__global__ void __launch_bounds__(kThreads, scalar_min_blocks(ScalarKernel::kForward, KH))
adaptive_conv2d_fwd_kernel(const Geom g, const FwdCfg cfg, const scalar_t* __restrict__ input,
                           const scalar_t* __restrict__ weight,
                           const scalar_t* __restrict__ kbias, const scalar_t* __restrict__ bias,
                           scalar_t* __restrict__ out) {
  using K = ScalarKernelTraits<scalar_t, KH, KW>;
  using acc_t = typename K::acc_t;
  using V = typename K::V;
  const int T = K::kStatic ? K::kT : g.T, Tp = K::kStatic ? K::kTp : g.Tp;

  extern __shared__ __align__(16) unsigned char smem_raw[];
  acc_t* const qs = reinterpret_cast<acc_t*>(smem_raw);  // [oct][cch][tt][Tp]
  acc_t* const bs = qs + cfg.off_beta;                     // [oct][cch][tt]
  acc_t* const xs = qs + cfg.off_box;                      // [cch][bh][bw]
  acc_t* const ys = qs + cfg.off_y;                        // [oct][P], one column per thread

  const auto [tid, py, px, pbase, rstep] = thread_patch(g, cfg);

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    const FwdItem it = fwd_item(item, cfg, g);
    const int ot = it.ot, tx = it.tx, ty = it.ty, gi = it.gi, n = it.n;

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
          if constexpr (K::kStatic) {
            // Static kernels always run with tt == T, t0 == 0 (the planner guarantees it).
            // load_patch's loop written out: through the call, nvcc schedules the 7x7
            // float32 kernel differently (the other kernels' SASS is the same either way)
            acc_t xr[K::kT];
#pragma unroll
            for (int ah = 0; ah < KH; ++ah) {
#pragma unroll
              for (int aw = 0; aw < KW; ++aw) xr[ah * KW + aw] = xb[ah * rstep + aw * g.dW];
            }
            for (int ol = 0; ol < oct_a; ++ol) {
              const acc_t* const q = qs + (ol * cch_a + cl) * K::kT * K::kTp;
              const acc_t* const b = bs + (ol * cch_a + cl) * K::kT;
              acc_t yv = acc_t(0);
#pragma unroll(K::kFullT ? K::kT : 1)
              for (int t = 0; t < K::kT; ++t) {
                const acc_t s = sigma_static<K::kT, K::kTp>(q + t * K::kTp, b[t], xr);
                acc_t xt;
                if constexpr (K::kFullT) {
                  xt = xr[t];
                } else {  // runtime t: read the box, never index the register array
                  xt = xb[(t / KW) * rstep + (t % KW) * g.dW];
                }
                yv = fma_acc(tanh_acc<K::kFast>(s), xt, yv);
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
                yv = fma_acc(tanh_acc<K::kFast>(s), xb[th * rstep + tw * g.dW], yv);
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

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
