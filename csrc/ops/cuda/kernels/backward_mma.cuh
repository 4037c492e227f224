// Fused backward on the tensor cores, float16 and bfloat16 (32-bit indexing, T + 1 <= 64):
// one pass per tile recomputes sigma and tanh once and produces grad_input, grad_weight and
// grad_kernel_bias. Three GEMMs per (o, c) pair and tile of up to 128 output pixels, all
// mma.sync m16n8k16 with fp32 accumulators, K padded to 16 * KS as in forward_mma.cuh:
//   sigma [pixels x uv]  = patch [pixels x K] . Q^T          (beta: the patch's ones column)
//   dX    [pixels x K]  += dsigma [pixels x uv] . Q [uv x K]  (plus the direct term g * t)
//   dQ^T  [K x uv]      += patch^T [K x pixels] . dsigma      (row T: grad_beta)
// with dsigma = g * X * (1 - t^2): 1 - t^2 in fp32 from the C fragment of sigma, the products
// in packed 16-bit (dsigma_tile). The C fragment of an m16n8 tile is half of the A fragment
// of an m16k16 step, so dsigma feeds the dX GEMM straight from registers; the dQ GEMM
// reduces over pixels, so dsigma goes through shared memory and comes back by ldmatrix.trans.
//
// Taps in n8 tiles waste columns: T = 9 is one full tile and one with a single real tap. For
// odd square kernels (T = 8 kTail + 1) with 2 or more output channels per round (kPaired),
// channels run in pairs over taps 0..T-2 (kTail full tiles; one dX k16 step takes tile j of
// both channels: A = [dsigma(ol) | dsigma(ol + 1)], B = their Q rows stacked), and tap T - 1
// of all the round's channels is one shared n8 tile, as in the forward: sigma's columns are
// the 8 channels, dX's k16 step has the channels as k (8-15: zero rows) and its dQ unit has
// them as N. Odd channel counts leave one channel to the one-channel loop, all taps.
//
// Block = (absolute input channel c', split s). It walks over the tiles (n, tile) = s,
// s + S, ... and, per tile, over the output channels of c's group in rounds of oct:
//   1. im2col of the tile, [Pp][16 KS + 8] 16-bit (zero rows past the tile or the output);
//   2. per round: stage Q/beta of the oct pairs (forward_mma's layout); each warp, for its
//      16 pixels: the paired loop and the shared tile (kPaired), then the one-channel loop:
//      sigma (A = ldmatrix of the im2col), tanh, dsigma to shared memory ([oct][Pp][16 KS +
//      8], the shared tile's [8][Pp + 8]), dX += dsigma . Q (B = ldmatrix.trans of Q) in
//      registers across all channels;
//   3. per round: the dQ GEMM, units (channel, K m-tile, pair of n8 tap tiles) and the shared
//      tile's (K m-tile) dealt to the warps in a fixed order; each unit sums over the tile's
//      pixels and adds its fragment to the block's fp32 dQ accumulator in shared memory,
//      [Og][T][T + 1]: every element has one owner lane, so the sums are in a fixed order
//      (no atomics);
//   4. dX of the tile to shared memory, [T][Pp] fp32, then each thread sums the input box
//      cells it owns over the taps in a fixed order (col2im as a gather, no atomics) and
//      writes them out like the scalar grad_input kernel: plain stores (one tile covers
//      the image), float atomicAdd (non-deterministic mode), or per-tile workspace boxes
//      that adaptive_conv2d_gather_dx_kernel sums in a fixed order (deterministic mode).
// At the end the block's dQ leaves once, like the scalar grad_weight kernel: plain stores
// (one split), double atomicAdd, or (deterministic) a per-split workspace reduced in split
// order by adaptive_conv2d_reduce_splits_kernel.
//
// Which gradients a variant produces is a template argument (kGrads, BwdGrads): the
// weight-only kernel (a first layer, whose input needs no gradient) has no dX GEMM, no dX
// accumulators and no step 4; the input-only kernel (frozen generator) stores no dsigma and
// has no dQ accumulator and no step 3. The planner gives each the shared memory it needs.
#pragma once

#include "backward_input.cuh"
#include "backward_weight.cuh"
#include "forward_mma.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// BwdGrads (the gradients a variant produces) and BwdMmaCfg: configs.h.

// tanh of the backward: packed tanh.approx.{f16,bf16}x2 when true, else tanh.approx.f32 of
// each fp32 sigma. Chosen per dtype from the emulated gradient errors (testing/
// emulate_kernels.cpp "bwdmma"); ADAPTIVE_CONV_BWD_PACKED_TANH overrides it for that check.
template <typename scalar_t>
struct BwdPackedTanh {
#ifdef ADAPTIVE_CONV_BWD_PACKED_TANH
  static constexpr bool value = ADAPTIVE_CONV_BWD_PACKED_TANH;
#else
  static constexpr bool value = std::is_same<scalar_t, __half>::value;
#endif
};

// dsigma and the direct dX term of one m16n8 tile of sigma (c, fp32): x01 / x23 hold the
// patch X at the same (pixel, column) places (pixel rows gq and gq + 8), gv the output
// gradients of the four elements and gg0 / gg1 the same as 16-bit pairs (elements 0, 1 / 2,
// 3). Adds g * t to dxd and returns dsigma packed as 16-bit pairs. 1 - t^2 is formed in fp32 (from a 16-bit
// t it would cancel), then dsigma = (g * X) * (1 - t^2) in packed 16-bit products: 2 mul.rn
// x2 per pair instead of unpacking X and 4 FMUL, the pair being packed for the dX mma anyway.
// first_col_only: the tile's only real column is its first (T = 8 tile + 1, the last tile
// of the odd square kernels): columns 2 tq + 1 are the beta column or padding, whose
// dsigma nothing reads (Q rows >= T are 0, dQ rows >= T are dropped), so only elements 0
// and 2 are computed (one packed tanh, or two scalar ones) and the others are set to 0.
// kSoft: tanh on the FMA pipe (soft_tanh.cuh, packed 16-bit), no MUFU.
template <typename scalar_t, bool kSoft = false>
__device__ __forceinline__ void dsigma_tile(const float (&c)[4], uint32_t x01, uint32_t x23, const float (&gv)[4],
                                            uint32_t gg0, uint32_t gg1, bool first_col_only, float (&dxd)[4],
                                            uint32_t& ds01, uint32_t& ds23) {
  float t[4];
  if (first_col_only) {
    if constexpr (BwdPackedTanh<scalar_t>::value) {
      const uint32_t t02 = ptx::tanh2<scalar_t>(ptx::pack2f<scalar_t>(c[0], c[2]));
      t[0] = ptx::lo_float<scalar_t>(t02);
      t[2] = ptx::hi_float<scalar_t>(t02);
    } else {
      t[0] = ptx::tanh_f32(c[0]);
      t[2] = ptx::tanh_f32(c[2]);
    }
    const uint32_t omt02 = ptx::pack2f<scalar_t>(__fmaf_rn(-t[0], t[0], 1.f), __fmaf_rn(-t[2], t[2], 1.f));
    const uint32_t gx02 = ptx::hmul2<scalar_t>((gg0 & 0xffffu) | (gg1 << 16), (x01 & 0xffffu) | (x23 << 16));
    const uint32_t ds02 = ptx::hmul2<scalar_t>(gx02, omt02);
    dxd[0] = __fmaf_rn(gv[0], t[0], dxd[0]);
    dxd[2] = __fmaf_rn(gv[2], t[2], dxd[2]);
    ds01 = ds02 & 0xffffu;
    ds23 = ds02 >> 16;
    return;
  }
  if constexpr (kSoft || BwdPackedTanh<scalar_t>::value) {
    auto tanh2 = [](uint32_t v) {
      if constexpr (kSoft) {
        return soft_tanh::tanh2<scalar_t>(v);
      } else {
        return ptx::tanh2<scalar_t>(v);
      }
    };
    const uint32_t t01 = tanh2(ptx::pack2f<scalar_t>(c[0], c[1]));
    const uint32_t t23 = tanh2(ptx::pack2f<scalar_t>(c[2], c[3]));
    t[0] = ptx::lo_float<scalar_t>(t01);
    t[1] = ptx::hi_float<scalar_t>(t01);
    t[2] = ptx::lo_float<scalar_t>(t23);
    t[3] = ptx::hi_float<scalar_t>(t23);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) t[i] = ptx::tanh_f32(c[i]);
  }
  float omt[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    omt[i] = __fmaf_rn(-t[i], t[i], 1.f);
    dxd[i] = __fmaf_rn(gv[i], t[i], dxd[i]);
  }
  ds01 = ptx::hmul2<scalar_t>(ptx::hmul2<scalar_t>(gg0, x01), ptx::pack2f<scalar_t>(omt[0], omt[1]));
  ds23 = ptx::hmul2<scalar_t>(ptx::hmul2<scalar_t>(gg1, x23), ptx::pack2f<scalar_t>(omt[2], omt[3]));
}

// One k16 step of dX: dxacc[n8 tile] += ds . B over the K n-pairs with a real column (< T),
// B = 16 rows of Q (k) x K by ldmatrix.trans from this lane's row address qb (+ 16 per pair).
template <typename scalar_t, int KS>
__device__ __forceinline__ void dx_step(float (&dxacc)[2 * KS][4], const uint32_t (&ds)[4], const scalar_t* qb, int T) {
#pragma unroll
  for (int jp = 0; jp < KS; ++jp) {
    if (16 * jp >= T) break;  // dX columns >= T (beta, padding) are not needed
    uint32_t b[4];
    ptx::ldmatrix_x4_trans(b, qb + 16 * jp);
    ptx::mma_m16n8k16<scalar_t>(dxacc[2 * jp], ds, b[0], b[1]);
    ptx::mma_m16n8k16<scalar_t>(dxacc[2 * jp + 1], ds, b[2], b[3]);
  }
}

// One dQ unit: acc[h] = A . B over ksteps k16 steps of pixels, A = patch^T (ldmatrix.trans
// at pa, + astep per step), B = two n8 tiles of dsigma [pixels][taps] (kTransB) or one of the
// shared tile's [8 output channels][pixels] (ldmatrix, + bstep per step); kTwo: both n8
// tiles. Then acc[h][e] (K column kc = 16 mi + gq + 8 (e >> 1), N column nc = 8 h + 2 tq +
// (e & 1): a tap, or a channel of the shared tile) is added to dq at (nc - 2 tq) * nstride +
// kc - (16 mi + gq) from dqo when nc - 2 tq < nlim and kc - (16 mi + gq) < klim.
// Instantiated per kind so that the loop has no per-step tests and, with T known at compile
// time, the accumulation's addresses are immediates.
template <typename scalar_t, bool kTransB, bool kTwo>
__device__ __forceinline__ void dq_unit(float* dqo, int nstride, int nlim, int klim, const scalar_t* pa, int astep,
                                        const scalar_t* pb, int bstep, int ksteps) {
  float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
  for (int kp = 0; kp < ksteps; ++kp, pa += astep, pb += bstep) {
    uint32_t af[4], bf[4];
    ptx::ldmatrix_x4_trans(af, pa);
    if constexpr (kTransB) {
      ptx::ldmatrix_x4_trans(bf, pb);
    } else {
      ptx::ldmatrix_x4(bf, pb);
    }
    ptx::mma_m16n8k16<scalar_t>(acc[0], af, bf[0], bf[1]);
    if constexpr (kTwo) ptx::mma_m16n8k16<scalar_t>(acc[1], af, bf[2], bf[3]);
  }
#pragma unroll
  for (int h = 0; h < (kTwo ? 2 : 1); ++h)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int nc = 8 * h + (e & 1), kc = 8 * (e >> 1);
      if (nc < nlim && kc < klim) dqo[nc * nstride + kc] += acc[h][e];
    }
}

// Min. blocks per SM = 1: no register cap below 255 (see forward_mma.cuh). kTail >= 0: the
// kernel for T = 8 kTail + 1 exactly (odd square kernels, as in forward_mma.cuh), with the
// tile counts and the one-column last tile known at compile time, and the paired loop and
// shared tile (kPaired); kTail = -1: any T with T + 1 <= 16 KS, the one-channel loop only.
template <typename scalar_t, int KS, int kTail, int kGrads>
__global__ void __launch_bounds__(kThreads, 1)
adaptive_conv2d_bwd_mma_kernel(const Geom g, const BwdMmaCfg cfg, const scalar_t* __restrict__ grad_out,
                               const scalar_t* __restrict__ input, const scalar_t* __restrict__ weight,
                               const scalar_t* __restrict__ kbias, float* __restrict__ grad_in,
                               float* __restrict__ dx_ws, double* __restrict__ gw, double* __restrict__ gkb,
                               double* __restrict__ ws_w, double* __restrict__ ws_kb) {
  static_assert(kTail < 0 || 8 * kTail + 2 <= mma_k(KS), "T + 1 must fit in K");
  constexpr int kK = mma_k(KS), kRow = mma_row(KS);
  constexpr bool kPaired = kTail >= 0;  // pairs of output channels + the shared last-tap tile
  constexpr bool kDx = (kGrads & kBwdInput) != 0, kDw = (kGrads & kBwdWeight) != 0;
  static_assert(kDx || kDw, "a fused backward produces at least one gradient");
  // Weight only, 5x5 and 7x7, tanh.approx.f32 (bfloat16): the paired loop is bound by the MUFU
  // with issue slots to spare (no dX GEMM), so one tap tile of its 2 kTail per trip takes the
  // FMA-pipe tanh (static model, lenet bf16: 48 -> 41 cycles a trip). Not for 3x3 (two tiles a
  // trip leave too few slots), float16 (its packed tanh's unpacking fills them) or with dX.
  constexpr bool kSoftTile = kPaired && !kDx && kTail >= 3 && !BwdPackedTanh<scalar_t>::value;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* const dq = reinterpret_cast<float*>(smem_raw);                         // [Og][T][T + 1]
  scalar_t* const qs = reinterpret_cast<scalar_t*>(smem_raw + cfg.off_q);       // [oct][kK][kRow]
  scalar_t* const col = reinterpret_cast<scalar_t*>(smem_raw + cfg.off_col);    // [Pp][kRow]
  scalar_t* const dls = reinterpret_cast<scalar_t*>(smem_raw + cfg.off_dl);     // [8][Pp + 8]
  scalar_t* const dss = reinterpret_cast<scalar_t*>(smem_raw + cfg.off_ds);     // [oct][Pp][kRow]
  float* const dxs = reinterpret_cast<float*>(smem_raw + cfg.off_ds);           // [T][Pp] (after the rounds)
  const int T = kTail >= 0 ? 8 * kTail + 1 : g.T, T1 = T + 1;

  const int tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  const bool warp_active = warp * 16 < cfg.P;
  // ldmatrix row addresses of this lane: matrix i = lane / 8, row r = lane % 8.
  const int li = lane >> 3, lr = lane & 7;
  const int brow = ((lane & 7) + 8 * (lane >> 4)) * kRow + 8 * ((lane >> 3) & 1);  // B = Q (as forward)
  const int arow = (warp * 16 + lr + 8 * (li & 1)) * kRow + 8 * (li >> 1);        // A = im2col rows
  const int qtrow = (lr + 8 * (li & 1)) * kRow + 8 * (li >> 1);                   // B = Q^T (trans)
  const int dstrow = (lr + 8 * (li >> 1)) * kRow + 8 * (li & 1);                  // A = patch^T (trans)
  const int ptrow = (lr + 8 * (li & 1)) * kRow + 8 * (li >> 1);                   // B = dsigma (trans)
  // Paired loop: matrices 0, 1 from output channel ol, 2, 3 from ol + 1 (8 rows each).
  const int pbrow = (li >> 1) * kK * kRow + lr * kRow + 8 * (li & 1);              // B = Q (two channels)
  const int pqtrow = (li & 1) * kK * kRow + lr * kRow + 8 * (li >> 1);             // B = Q^T (trans, two)
  const int dlw = cfg.Pp + 8;                                                      // dls row stride: 8 rows, 8 banks apart
  const int dlrow = lr * dlw + 8 * (li & 1);                                       // B = dls (shared tile)

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    const int c_abs = static_cast<int>(item % g.C);
    const int split = static_cast<int>(item / g.C);
    const int gi = c_abs / g.Cg, cl = c_abs - gi * g.Cg;

    if constexpr (kDw) {
      __syncthreads();  // the previous item's readers of dq are done
      for (int i = tid; i < g.Og * T * T1; i += kThreads) dq[i] = 0.f;
    }
    bool q_staged = false;

    for (int w = split; w < cfg.work_items; w += cfg.splits) {
      const int tx = w % cfg.tiles_w;
      const int ty = (w / cfg.tiles_w) % cfg.tiles_h;
      const int n = w / (cfg.tiles_w * cfg.tiles_h);
      const int ih0 = ty * cfg.toh * g.sH - g.pH, iw0 = tx * cfg.tow * g.sW - g.pW;

      __syncthreads();  // the previous tile's readers of col / dxs are done
      // 1. im2col: tap k < T of a real pixel, 1 in column T, 0 elsewhere.
      for (int i = tid; i < cfg.Pp * kK; i += kThreads) {
        const int p = i / kK, k = i - p * kK;
        const int py = p / cfg.tow, px = p - py * cfg.tow;
        float v = 0.f;
        if (p < cfg.P && ty * cfg.toh + py < g.Ho && tx * cfg.tow + px < g.Wo) {
          if (k < T) {
            const int ah = k / g.kW;
            const int ih = ih0 + py * g.sH + ah * g.dH, iw = iw0 + px * g.sW + (k - ah * g.kW) * g.dW;
            if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
              col[p * kRow + k] = ldg(input + ((n * g.C + c_abs) * g.H + ih) * g.W + iw);
              continue;
            }
          } else if (k == T) {
            v = 1.f;
          }
        }
        col[p * kRow + k] = ptx::from_float<scalar_t>(v);
      }

      // This lane's pixels (rows gq, gq + 8 of the warp's m-tile) and their output offsets.
      int gofs[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int p = warp * 16 + gq + 8 * r;
        const int py = p / cfg.tow, px = p - py * cfg.tow;
        const int oh = ty * cfg.toh + py, ow = tx * cfg.tow + px;
        gofs[r] = p < cfg.P && oh < g.Ho && ow < g.Wo ? oh * g.Wo + ow : -1;
      }
      float dxacc[2 * KS][4];  // dX of the lane's pixels, n8 tiles of K, summed over all pairs
#pragma unroll
      for (int j = 0; j < 2 * KS; ++j) dxacc[j][0] = dxacc[j][1] = dxacc[j][2] = dxacc[j][3] = 0.f;
      float dlast[4] = {0.f, 0.f, 0.f, 0.f};  // direct term g * t of the shared tile, per element (kPaired)

      for (int r = 0; r < cfg.rounds; ++r) {
        const int o0 = r * cfg.oct;
        const int oct_a = min(cfg.oct, g.Og - o0);
        const int n_paired = kPaired ? (oct_a & ~1) : 0;  // output channels of the paired loop and shared tile
        if (!q_staged || cfg.rounds > 1) {
          stage_q_mma<KS>(qs, weight, kbias, g, gi * g.Og + o0, oct_a, cl, 1);
          q_staged = true;
        }
        __syncthreads();  // col, qs staged; the previous round's dQ readers of dss / dls are done

        // 2. sigma, dsigma, dX per warp.
        if (warp_active) {
          uint32_t a[KS][4];
#pragma unroll
          for (int ks = 0; ks < KS; ++ks) ptx::ldmatrix_x4(a[ks], col + arow + 16 * ks);
          const int hw = g.Ho * g.Wo;
          const scalar_t zero = ptx::from_float<scalar_t>(0.f);
          // grad_out of output channel o0 at this lane's pixels (a valid address for invalid ones).
          const scalar_t* const gob = grad_out + (n * g.O + gi * g.Og + o0) * hw;
          const scalar_t* gp[2] = {gob + max(gofs[0], 0), gob + max(gofs[1], 0)};

          if constexpr (kPaired) {
            // 2a. Output channels (ol, ol + 1), taps 0 .. T - 2: per n8 tile j of taps, sigma of
            // both, then one k16 step of dX with A = [dsigma(ol) | dsigma(ol + 1)] and B = their
            // Q rows 8 j .. 8 j + 7 stacked.
            // g of output channels 2 tq + e (this lane's columns of the shared tile) at rows gq / gq +
            // 8, each twice as a 16-bit pair (the dsigma products' operand); the quad's lane tq = pi
            // holds those of pair pi, which the paired loop takes by shuffles instead of loads.
            uint32_t g2[2][2];  // [row r][e]
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
              for (int e = 0; e < 2; ++e) {
                const scalar_t h = gofs[r] >= 0 && 2 * tq + e < n_paired ? ldg(gp[r] + (2 * tq + e) * hw) : zero;
                g2[r][e] = ptx::pack2(h, h);
              }
            const scalar_t* q = qs;
            scalar_t* dso = dss + (warp * 16 + gq) * kRow + 2 * tq;
#pragma unroll 1  // one trip = two channels; unrolled, ptxas adds a peeled trip the static model cannot place
            for (int ol = 0, src = lane & ~3; ol < n_paired; ol += 2, ++src, q += 2 * kK * kRow, dso += 2 * cfg.Pp * kRow) {
              float gv[2][4];
              uint32_t gg[2][2];
#pragma unroll
              for (int e = 0; e < 2; ++e) {  // output channel ol + e
                gg[e][0] = ptx::shfl_idx(g2[0][e], src);
                gg[e][1] = ptx::shfl_idx(g2[1][e], src);
                gv[e][0] = gv[e][1] = ptx::lo_float<scalar_t>(gg[e][0]);
                gv[e][2] = gv[e][3] = ptx::lo_float<scalar_t>(gg[e][1]);
              }
#pragma unroll
              for (int j = 0; j < kTail; ++j) {
                float c[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                  uint32_t b[4];
                  ptx::ldmatrix_x4(b, q + pbrow + 8 * j * kRow + 16 * ks);
                  ptx::mma_m16n8k16<scalar_t>(c[0], a[ks], b[0], b[1]);
                  ptx::mma_m16n8k16<scalar_t>(c[1], a[ks], b[2], b[3]);
                }
                uint32_t ds[4];  // A fragment: dsigma of ol (k 0-7), of ol + 1 (k 8-15)
                const uint32_t x01 = a[j / 2][2 * (j % 2)], x23 = a[j / 2][2 * (j % 2) + 1];
                dsigma_tile<scalar_t>(c[0], x01, x23, gv[0], gg[0][0], gg[0][1], false, dxacc[j], ds[0], ds[1]);
                if (kSoftTile && j == 0) {
                  dsigma_tile<scalar_t, kSoftTile>(c[1], x01, x23, gv[1], gg[1][0], gg[1][1], false, dxacc[j], ds[2], ds[3]);
                } else {
                  dsigma_tile<scalar_t>(c[1], x01, x23, gv[1], gg[1][0], gg[1][1], false, dxacc[j], ds[2], ds[3]);
                }
                if constexpr (kDw) {
                  *reinterpret_cast<uint32_t*>(dso + 8 * j) = ds[0];
                  *reinterpret_cast<uint32_t*>(dso + 8 * kRow + 8 * j) = ds[1];
                  *reinterpret_cast<uint32_t*>(dso + cfg.Pp * kRow + 8 * j) = ds[2];
                  *reinterpret_cast<uint32_t*>(dso + (cfg.Pp + 8) * kRow + 8 * j) = ds[3];
                }
                if constexpr (kDx) dx_step<scalar_t, KS>(dxacc, ds, q + pqtrow + 8 * j * kRow, T);
              }
            }
            // 2b. The shared tile: tap T - 1 of output channels o0 + 0..7 as the 8 columns (those
            // >= n_paired read Q row T, which is 0, and have g = 0). dsigma goes to dls [8][Pp + 8]
            // for dQ; dX += dsigma . Q[o][T - 1][K] with k = o (k 8-15: Q row T, 0).
            if (n_paired > 0) {
              const scalar_t* const qlast = lr < n_paired ? qs + (lr * kK + T - 1) * kRow : qs + T * kRow;
              float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
              for (int ks = 0; ks < KS; ks += 2) {
                uint32_t b[4];
                ptx::ldmatrix_x4(b, qlast + 16 * min(ks + (li >> 1), KS - 1) + 8 * (li & 1));
                ptx::mma_m16n8k16<scalar_t>(c, a[ks], b[0], b[1]);
                if (ks + 1 < KS) ptx::mma_m16n8k16<scalar_t>(c, a[ks + 1], b[2], b[3]);
              }
              const float gv[4] = {ptx::lo_float<scalar_t>(g2[0][0]), ptx::lo_float<scalar_t>(g2[0][1]),
                                   ptx::lo_float<scalar_t>(g2[1][0]), ptx::lo_float<scalar_t>(g2[1][1])};
              const uint32_t gg0 = (g2[0][0] & 0xffffu) | (g2[0][1] << 16), gg1 = (g2[1][0] & 0xffffu) | (g2[1][1] << 16);
              // X of tap T - 1 at rows gq, gq + 8, twice (the same for both columns).
              const scalar_t x0 = col[(warp * 16 + gq) * kRow + T - 1], x1 = col[(warp * 16 + gq + 8) * kRow + T - 1];
              uint32_t ds[4] = {0u, 0u, 0u, 0u};
              dsigma_tile<scalar_t>(c, ptx::pack2(x0, x0), ptx::pack2(x1, x1), gv, gg0, gg1, false, dlast, ds[0], ds[1]);
              if constexpr (kDw) {
                scalar_t* const dl = dls + (2 * tq) * dlw + warp * 16 + gq;
                dl[0] = ptx::from_bits16<scalar_t>(static_cast<uint16_t>(ds[0] & 0xffffu));
                dl[dlw] = ptx::from_bits16<scalar_t>(static_cast<uint16_t>(ds[0] >> 16));
                dl[8] = ptx::from_bits16<scalar_t>(static_cast<uint16_t>(ds[1] & 0xffffu));
                dl[dlw + 8] = ptx::from_bits16<scalar_t>(static_cast<uint16_t>(ds[1] >> 16));
              }
              if constexpr (kDx) {
                const scalar_t* const qt = (li & 1) ? qs + T * kRow : qlast;  // k 8-15: the zero row
                dx_step<scalar_t, KS>(dxacc, ds, qt + 8 * (li >> 1), T);
              }
            }
            gp[0] += n_paired * hw;
            gp[1] += n_paired * hw;
          }

          // 2c. The other output channels one at a time, all taps: uv 16 np .. 16 np + 15 as one
          // k16 step of dX.
#pragma unroll(KS <= 2 && !kPaired ? 2 : 1)  // two a trip: the g loads and addresses amortise; K >= 48 would need > 255 registers
          for (int ol = n_paired; ol < oct_a; ++ol, gp[0] += hw, gp[1] += hw) {
            const scalar_t gh0 = gofs[0] >= 0 ? ldg(gp[0]) : zero, gh1 = gofs[1] >= 0 ? ldg(gp[1]) : zero;
            const float g0 = ptx::to_float(gh0), g1 = ptx::to_float(gh1);
            const float gv[4] = {g0, g0, g1, g1};
            const uint32_t gg0 = ptx::pack2(gh0, gh0), gg1 = ptx::pack2(gh1, gh1);
            const scalar_t* const q = qs + ol * kK * kRow;
            scalar_t* const dso = dss + (ol * cfg.Pp + warp * 16 + gq) * kRow + 2 * tq;
#pragma unroll
            for (int np = 0; np < KS; ++np) {  // uv 16 np .. 16 np + 15: one k16 step of dX
              if (16 * np >= T) break;  // uv >= T: dsigma is not needed (Q rows and dQ rows unused)
              const bool hi_tile = 16 * np + 8 < T;
              float c_lo[4] = {0.f, 0.f, 0.f, 0.f}, c_hi[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
              for (int ks = 0; ks < KS; ++ks) {
                uint32_t b[4];
                ptx::ldmatrix_x4(b, q + brow + 16 * np * kRow + 16 * ks);
                ptx::mma_m16n8k16<scalar_t>(c_lo, a[ks], b[0], b[1]);
                if (hi_tile) ptx::mma_m16n8k16<scalar_t>(c_hi, a[ks], b[2], b[3]);
              }
              uint32_t ds[4] = {0u, 0u, 0u, 0u};  // A fragment of dsigma: rows gq / gq + 8, uv lo / hi
              dsigma_tile<scalar_t>(c_lo, a[np][0], a[np][1], gv, gg0, gg1, T - 16 * np == 1, dxacc[2 * np], ds[0], ds[1]);
              if (hi_tile) {
                dsigma_tile<scalar_t>(c_hi, a[np][2], a[np][3], gv, gg0, gg1, T - 16 * np - 8 == 1, dxacc[2 * np + 1], ds[2],
                                      ds[3]);
              }
              if constexpr (kDw) {
                *reinterpret_cast<uint32_t*>(dso + 16 * np) = ds[0];
                *reinterpret_cast<uint32_t*>(dso + 8 * kRow + 16 * np) = ds[1];
                *reinterpret_cast<uint32_t*>(dso + 16 * np + 8) = ds[2];
                *reinterpret_cast<uint32_t*>(dso + 8 * kRow + 16 * np + 8) = ds[3];
              }
              // dX += dsigma[:, uv 16 np ..] . Q[uv 16 np .., K]: Q rows uv >= T are 0.
              if constexpr (kDx) dx_step<scalar_t, KS>(dxacc, ds, q + qtrow + 16 * np * kRow, T);
            }
          }
        }
        __syncthreads();  // dsigma of every pixel of the tile is in dss (and dls); qs is read
        if constexpr (!kDw) continue;  // input only: step 3 is the rest of the round

        // 3. dQ^T[K, uv] += patch^T . dsigma over the tile's pixels (M = K, N = taps), one unit
        // per warp at a time: (output channel, K m-tile, pair of n8 tap tiles), then, with the
        // shared tile, (K m-tile) with N = the 8 output channels at tap T - 1.
        const int ksteps = (cfg.P + 15) / 16;
        const int tiles_all = (T + 7) / 8, jpairs = (tiles_all + 1) / 2;
        const int units = oct_a * KS * jpairs, units_all = units + (n_paired > 0 ? KS : 0);
        for (int u = warp; u < units_all; u += kMmaWarps) {
          const bool last_tap = u >= units;
          const int ol = last_tap ? 0 : u / (KS * jpairs);
          const int mi = last_tap ? u - units : (u / jpairs) % KS, jp = last_tap ? 0 : u % jpairs;
          const int ntiles = last_tap ? 1 : (ol < n_paired ? T / 8 : tiles_all);  // kPaired: T / 8 = kTail
          if (2 * jp >= ntiles || 16 * mi >= T1) continue;
          const scalar_t* const pa = col + dstrow + 16 * mi;
          const int k0 = 16 * mi + gq;  // this lane's first K column
          if (last_tap) {  // dq[o0 + nc][T - 1][k]
            dq_unit<scalar_t, false, false>(dq + ((o0 + 2 * tq) * T + T - 1) * T1 + k0, T * T1, n_paired - 2 * tq,
                                            T1 - k0, pa, 16 * kRow, dls + dlrow, 16, ksteps);
          } else {  // dq[o0 + ol][16 jp + nc][k]
            float* const dqo = dq + ((o0 + ol) * T + 16 * jp + 2 * tq) * T1 + k0;
            const int nlim = min(T - 16 * jp, 8 * (ntiles - 2 * jp)) - 2 * tq;
            const scalar_t* const pb = dss + ol * cfg.Pp * kRow + ptrow + 16 * jp;
            if (2 * jp + 1 < ntiles) {
              dq_unit<scalar_t, true, true>(dqo, T1, nlim, T1 - k0, pa, 16 * kRow, pb, 16 * kRow, ksteps);
            } else {
              dq_unit<scalar_t, true, false>(dqo, T1, nlim, T1 - k0, pa, 16 * kRow, pb, 16 * kRow, ksteps);
            }
          }
        }
      }

      if constexpr (!kDx) continue;  // weight only: the rest of the tile is dX's
      if constexpr (kPaired) {  // the shared tile's direct term: column T - 1, summed over the quad
        if (warp_active) {
          float s0 = dlast[0] + dlast[1], s1 = dlast[2] + dlast[3];
          s0 += ptx::shfl_xor(s0, 1);
          s1 += ptx::shfl_xor(s1, 1);
          s0 += ptx::shfl_xor(s0, 2);
          s1 += ptx::shfl_xor(s1, 2);
          if (tq == 0) {
            dxacc[kTail][0] += s0;
            dxacc[kTail][2] += s1;
          }
        }
      }
      // 4. dX of the tile: [T][Pp] in shared memory, then each box cell sums its taps.
      __syncthreads();  // the dQ readers of dss (which dxs overlays) are done
      if (warp_active) {
#pragma unroll
        for (int j = 0; j < 2 * KS; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int k = 8 * j + 2 * tq + (e & 1);
            if (k < T) dxs[k * cfg.Pp + warp * 16 + gq + 8 * (e >> 1)] = dxacc[j][e];
          }
      }
      __syncthreads();
      float* const dst = cfg.dx_mode == static_cast<int>(DxMode::kWorkspace)
                             ? dx_ws + (((n * cfg.tiles_h + ty) * cfg.tiles_w + tx) * g.C + c_abs) * cfg.box
                             : grad_in + (n * g.C + c_abs) * g.H * g.W;
      for (int i = tid; i < cfg.box; i += kThreads) {
        const int y = i / cfg.bw, x = i - y * cfg.bw;
        float sum = 0.f;
        for (int ah = 0; ah < g.kH; ++ah) {
          const int yy = y - ah * g.dH;
          if (yy < 0) break;
          const int py = yy / g.sH;
          if (py * g.sH != yy || py >= cfg.toh) continue;
          for (int aw = 0; aw < g.kW; ++aw) {
            const int xx = x - aw * g.dW;
            if (xx < 0) break;
            const int px = xx / g.sW;
            if (px * g.sW != xx || px >= cfg.tow) continue;
            sum += dxs[(ah * g.kW + aw) * cfg.Pp + py * cfg.tow + px];
          }
        }
        if (cfg.dx_mode == static_cast<int>(DxMode::kWorkspace)) {
          dst[i] = sum;
        } else {
          const int ih = ih0 + y, iw = iw0 + x;
          if (ih >= 0 && ih < g.H && iw >= 0 && iw < g.W) {
            if (cfg.dx_mode == static_cast<int>(DxMode::kStore)) {
              dst[ih * g.W + iw] = sum;
            } else {
              atomicAdd(dst + ih * g.W + iw, sum);
            }
          }
        }
      }
    }

    // The block's dQ and dbeta of channel cl leave once.
    if constexpr (!kDw) continue;
    __syncthreads();
    const int E = g.O * g.Cg * T * T, Eb = g.O * g.Cg * T;
    for (int i = tid; i < g.Og * T * T1; i += kThreads) {
      const int k = i % T1, rrow = i / T1;  // rrow = ol * T + uv
      const int ol = rrow / T, uv = rrow - ol * T;
      const int row = ((gi * g.Og + ol) * g.Cg + cl) * T + uv;
      const double v = dq[i];
      double* dstp;
      if (cfg.dw_mode == static_cast<int>(DwMode::kWorkspace)) {
        dstp = k < T ? ws_w + static_cast<long long>(split) * E + row * T + k : ws_kb + static_cast<long long>(split) * Eb + row;
      } else {
        dstp = k < T ? gw + row * T + k : gkb + row;
      }
      if (cfg.dw_mode == static_cast<int>(DwMode::kAtomic)) {
        atomicAdd(dstp, v);
      } else {
        *dstp = v;
      }
    }
  }
}

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
