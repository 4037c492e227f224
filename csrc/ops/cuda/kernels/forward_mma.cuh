// Forward kernel on the tensor cores, float16 and bfloat16 (32-bit indexing, T + 1 <= 64).
//
// sigma of 16 output pixels for one (o, c) pair is one small GEMM: A = the patch tile
// [16 pixels x K], K = the taps u'v' of channel c plus one column of 1s that carries beta,
// zero-padded to 16 * KS; B = Q[o, c] as [K x N], N = uv in the same order as K (beta is
// the row of the 1s column). C[p][uv] = sigma[p, o, c, uv] comes out of mma.sync m16n8k16
// in fp32, and the lane that holds C[p][uv] holds the patch value X[p][uv] in its A
// registers (same row, same column index), so tanh (packed 16-bit), the product with the
// patch and the partial sum over uv stay in registers; a quad shuffle ends the sum over uv.
// One A fragment (the patch tile of channel c) serves every output channel of the block.
//
// Block = (image n, group, tile of up to 128 output pixels, up to kMmaOct output channels);
// warp w owns pixels 16w..16w+15 of the tile. Per round of cch input channels the block
// stages in shared memory (16-bit): the input box [cch][bh*bw + 2] (the 2 extra cells hold
// the constants 1 and 0 that the beta and padding columns of A read) and Q/beta as
// [oct][cch][n = 16*KS][k = 16*KS + 8]; the 8-element row padding makes the eight 16-byte
// rows of every ldmatrix land in distinct bank groups (row stride 48, 80, 112 or 144 bytes).
// Outputs: y accumulates per lane in fp32 registers across all input channels, written once.
#pragma once

#include "ptx.cuh"
#include "tile_loaders.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

constexpr int kMmaWarps = kThreads / 32;
constexpr int kMmaPixels = kMmaWarps * 16;  // output pixels per block (one m16 tile per warp)
constexpr int kMmaOct = 8;                  // most output channels per block (register arrays)
constexpr int kMmaMaxKs = 4;                // K = T + 1 <= 64: kernels up to 7x7 (T = 49)

__host__ __device__ constexpr int mma_k(int ks) { return 16 * ks; }       // padded K (= padded N)
__host__ __device__ constexpr int mma_row(int ks) { return 16 * ks + 8; }  // Q row stride, elements

// The constants 1 (beta column) and 0 (padding columns) after each staged channel's box.
template <typename scalar_t>
__device__ __forceinline__ void stage_box_constants(scalar_t* __restrict__ xs, int nch, int box) {
  for (int c = threadIdx.x; c < nch; c += kThreads) {
    xs[c * (box + 2) + box] = ptx::from_float<scalar_t>(1.f);
    xs[c * (box + 2) + box + 1] = ptx::from_float<scalar_t>(0.f);
  }
}

// B operands of output channels [o_first, o_first + no) x local input channels [c0, c0 + nc):
// row n < T holds Q[o, c, n, 0..T-1] then beta[o, c, n] at column T; everything else is 0.
// One thread builds 8 consecutive columns of a row and stores them as one 16-byte vector
// (rows are 16-byte aligned: kRow * 2 = 32 KS + 16 bytes), so the index arithmetic, the
// division by nc included, is paid once per 8 elements: per element it cost ~60 SASS
// instructions, more than the mma work for few channels per round (depthwise).
template <int KS, typename scalar_t>
__device__ __forceinline__ void stage_q_mma(scalar_t* __restrict__ qs, const scalar_t* __restrict__ weight,
                                            const scalar_t* __restrict__ kbias, const Geom& g, int o_first,
                                            int no, int c0, int nc) {
  constexpr int kK = mma_k(KS), kRow = mma_row(KS), kChunks = kK / 8;  // 16-byte chunks per row
  const int T = g.T;
  const int total = no * nc * kK * kChunks;
  const scalar_t zero = ptx::from_float<scalar_t>(0.f);
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const int kc = i % kChunks;
    const int r = i / kChunks;  // (oc, nn)
    const int nn = r % kK;
    const int oc = r / kK;  // ol * nc + cl
    uint32_t w[4] = {0u, 0u, 0u, 0u};  // 0x0000 is +0 in float16 and bfloat16
    if (nn < T && 8 * kc <= T) {  // else the chunk is all padding
      const unsigned ol = static_cast<unsigned>(oc) / static_cast<unsigned>(nc);
      const int cl = oc - static_cast<int>(ol) * nc;
      const int row = ((o_first + static_cast<int>(ol)) * g.Cg + (c0 + cl)) * T + nn;
      const int q = row * T;  // the row's first element: 32-bit offsets (one IMAD.WIDE per load)
      const bool beta_here = T - 8 * kc < 8;  // column T is in this chunk
      const scalar_t b = beta_here && kbias != nullptr ? ldg(kbias + row) : zero;
      scalar_t v[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) {  // branch-free: clamped loads (always in the row), then selects
        const int k = 8 * kc + e;
        const scalar_t x = ldg(weight + (q + min(k, T - 1)));
        v[e] = k < T ? x : (k == T ? b : zero);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) w[e] = ptx::pack2(v[2 * e], v[2 * e + 1]);
    }
    *reinterpret_cast<uint4*>(qs + r * kRow + 8 * kc) = make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// tanh(sigma) * X for the four C elements of n8 tile `tile` (columns 8 tile ..), added to the
// two pixels' sums; xg / xg8: the A registers holding X at the same (pixel, column) places.
// When the tile's only real column is its first (T = 8 tile + 1: the last tile of every odd
// square kernel, 1x1 to 7x7), columns 2 tq + 1 are padding (C = 0: nothing to add), so one
// packed tanh of the two pixels' column 2 tq does instead of two (for tq > 0 that column is
// padding too: tanh(0) * X = 0). The test is uniform over the warp.
template <typename scalar_t>
__device__ __forceinline__ void tile_epilogue(const float (&c)[4], uint32_t xg, uint32_t xg8, int tile, int T,
                                              float& yg, float& yg8) {
  const bool first_col_only = T - 8 * tile == 1;
  const uint32_t t0 = ptx::tanh2<scalar_t>(ptx::pack2f<scalar_t>(c[0], first_col_only ? c[2] : c[1]));
  yg = __fmaf_rn(ptx::lo_float<scalar_t>(t0), ptx::lo_float<scalar_t>(xg), yg);
  if (first_col_only) {
    yg8 = __fmaf_rn(ptx::hi_float<scalar_t>(t0), ptx::lo_float<scalar_t>(xg8), yg8);
  } else {
    const uint32_t t1 = ptx::tanh2<scalar_t>(ptx::pack2f<scalar_t>(c[2], c[3]));
    yg = __fmaf_rn(ptx::hi_float<scalar_t>(t0), ptx::hi_float<scalar_t>(xg), yg);
    yg8 = __fmaf_rn(ptx::lo_float<scalar_t>(t1), ptx::lo_float<scalar_t>(xg8), yg8);
    yg8 = __fmaf_rn(ptx::hi_float<scalar_t>(t1), ptx::hi_float<scalar_t>(xg8), yg8);
  }
}

// Min. blocks per SM = 1 says "no register cap below 255": without it ptxas caps KS = 1 at
// 80 and KS = 3 at 128 registers and spills (nvcc 13.0); with it the instantiations need
// 96-183 registers and spill nothing (benchmarks/results/cuda-sm90-static_*.md).
// kTail >= 0: the kernel for T = 8 kTail + 1 exactly (odd square kernels 1x1, 3x3, 5x5, 7x7:
// kTail = 0, 1, 3, 6), with the tile count and the one-column last tile known at compile time;
// kTail = -1: any T with T + 1 <= 16 KS.
template <typename scalar_t, int KS, int kTail>
__global__ void __launch_bounds__(kThreads, 1)
adaptive_conv2d_fwd_mma_kernel(const Geom g, const FwdCfg cfg, const scalar_t* __restrict__ input,
                               const scalar_t* __restrict__ weight, const scalar_t* __restrict__ kbias,
                               const scalar_t* __restrict__ bias, scalar_t* __restrict__ out) {
  static_assert(kTail < 0 || 8 * kTail + 2 <= mma_k(KS), "T + 1 must fit in K");
  constexpr int kK = mma_k(KS), kRow = mma_row(KS);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  scalar_t* const qs = reinterpret_cast<scalar_t*>(smem_raw);  // [oct][cch][kK][kRow]
  scalar_t* const xs = qs + cfg.off_box;                         // [cch][box + 2]
  const int xstride = cfg.box + 2;
  const int T = kTail >= 0 ? 8 * kTail + 1 : g.T;  // a constant in the odd-square kernels

  const int tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  const bool warp_active = warp * 16 < cfg.P;

  // This lane's two pixels: rows gq and gq + 8 of the warp's m-tile.
  int py[2], px[2], pbase[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int p = warp * 16 + gq + 8 * r;
    py[r] = p < cfg.P ? p / cfg.tow : 0;
    px[r] = p < cfg.P ? p - py[r] * cfg.tow : 0;
    pbase[r] = py[r] * g.sH * cfg.bw + px[r] * g.sW;
  }
  // Box offsets of this lane's A columns k = 16 ks + 8 h + 2 tq + e (fixed for the launch):
  // >= 0 a tap, kOne the beta column, kZero padding.
  constexpr int kOne = -1, kZero = -2;
  int koff[KS][2][2];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks)
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int k = 16 * ks + 8 * h + 2 * tq + e;
        const int ah = k / g.kW;
        koff[ks][h][e] = k < T ? ah * g.dH * cfg.bw + (k - ah * g.kW) * g.dW : (k == T ? kOne : kZero);
      }
  // B rows this lane addresses for ldmatrix.x4: matrix m = lane / 8 is (n-tile m / 2, k half m % 2).
  const int brow = ((lane & 7) + 8 * (lane >> 4)) * kRow + 8 * ((lane >> 3) & 1);

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    const FwdItem it = fwd_item(item, cfg, g);
    const int o0 = it.ot * cfg.oct;
    const int oct_a = min(cfg.oct, g.Og - o0);
    const int ih0 = it.ty * cfg.toh * g.sH - g.pH;
    const int iw0 = it.tx * cfg.tow * g.sW - g.pW;

    float yacc[kMmaOct][2];
#pragma unroll
    for (int ol = 0; ol < kMmaOct; ++ol) yacc[ol][0] = yacc[ol][1] = 0.f;

    for (int c0 = 0; c0 < g.Cg; c0 += cfg.cch) {
      const int cch_a = min(cfg.cch, g.Cg - c0);
      __syncthreads();  // the previous round's readers are done with xs / qs
      stage_box<int32_t>(xs, input, g, it.n, it.gi * g.Cg + c0, cch_a, ih0, iw0, cfg.bh, cfg.bw, xstride);
      stage_box_constants(xs, cch_a, cfg.box);
      stage_q_mma<KS>(qs, weight, kbias, g, it.gi * g.Og + o0, oct_a, c0, cch_a);
      __syncthreads();
      if (!warp_active) continue;

      for (int cl = 0; cl < cch_a; ++cl) {
        const scalar_t* const xb = xs + cl * xstride;
        uint32_t a[KS][4];  // a[ks][r + 2h]: pixel row r, columns 16 ks + 8 h + 2 tq (+1)
#pragma unroll
        for (int ks = 0; ks < KS; ++ks)
#pragma unroll
          for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int rr = 0; rr < 2; ++rr) {
              scalar_t v[2];
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const int o = koff[ks][h][e];
                v[e] = xb[o >= 0 ? pbase[rr] + o : cfg.box + (kOne - o)];
              }
              a[ks][rr + 2 * h] = ptx::pack2(v[0], v[1]);
            }

#pragma unroll
        for (int ol = 0; ol < kMmaOct; ++ol) {
          if (ol >= oct_a) break;
          const scalar_t* const q = qs + (ol * cch_a + cl) * kK * kRow + brow;
#pragma unroll
          for (int np = 0; np < KS; ++np) {  // n-tiles 2 np and 2 np + 1: uv 16 np .. 16 np + 15
            if (16 * np >= T) break;
            const bool hi_tile = 16 * np + 8 < T;
            float c_lo[4] = {0.f, 0.f, 0.f, 0.f}, c_hi[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int ks = 0; ks < KS; ++ks) {
              uint32_t b[4];
              ptx::ldmatrix_x4(b, q + 16 * np * kRow + 16 * ks);
              ptx::mma_m16n8k16<scalar_t>(c_lo, a[ks], b[0], b[1]);
              if (hi_tile) ptx::mma_m16n8k16<scalar_t>(c_hi, a[ks], b[2], b[3]);
            }
            // C column uv of n-tile 2 np (+1) sits where A column uv does: a[np][0..1] ([2..3]).
            tile_epilogue<scalar_t>(c_lo, a[np][0], a[np][1], 2 * np, T, yacc[ol][0], yacc[ol][1]);
            if (hi_tile) tile_epilogue<scalar_t>(c_hi, a[np][2], a[np][3], 2 * np + 1, T, yacc[ol][0], yacc[ol][1]);
          }
        }
      }
    }

    if (warp_active) {
#pragma unroll
      for (int ol = 0; ol < kMmaOct; ++ol) {
        if (ol >= oct_a) break;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {  // sum over the quad's columns: every lane gets the total
          yacc[ol][rr] += ptx::shfl_xor(yacc[ol][rr], 1);
          yacc[ol][rr] += ptx::shfl_xor(yacc[ol][rr], 2);
        }
      }
#pragma unroll
      for (int ol = 0; ol < kMmaOct; ++ol) {
        if (ol >= oct_a) break;
        if ((ol & 3) != tq) continue;  // lane tq of the quad writes output channels tq, tq + 4
        const int o = it.gi * g.Og + o0 + ol;
        const float b = bias != nullptr ? ptx::to_float(ldg(bias + o)) : 0.f;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const int p = warp * 16 + gq + 8 * rr;
          const int oh = it.ty * cfg.toh + py[rr];
          const int ow = it.tx * cfg.tow + px[rr];
          if (p < cfg.P && oh < g.Ho && ow < g.Wo) {
            out[((it.n * g.O + o) * g.Ho + oh) * g.Wo + ow] = ptx::from_float<scalar_t>(yacc[ol][rr] + b);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
