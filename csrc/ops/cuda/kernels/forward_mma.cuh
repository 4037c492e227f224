// Forward kernel on the tensor cores, float16 and bfloat16 (32-bit indexing, T + 1 <= 64).
//
// sigma of 16 output pixels for one (o, c) pair is one small GEMM: A = the patch tile
// [16 pixels x K], K = the taps u'v' of channel c plus one column of 1s that carries beta,
// zero-padded to 16 * KS; B = Q[o, c] as [K x N], N = uv in the same order as K (beta is
// the row of the 1s column). C[p][uv] = sigma[p, o, c, uv] comes out of mma.sync m16n8k16
// in fp32, and the lane that holds C[p][uv] holds the patch value X[p][uv] in its A
// registers (same row, same column index), so tanh (packed 16-bit) and the product with the
// patch stay in registers; the sums over (c, uv) are mma.sync again (ProductSum).
// One A fragment (the patch tile of channel c) serves every output channel of the block.
//
// Block = (image n, group, tile of up to 128 output pixels, up to kMmaOct output channels);
// warp w owns pixels 16w..16w+15 of the tile. Per round of cch input channels the block
// stages in shared memory (16-bit): the input box [cch][bh*bw + 2] (the 2 extra cells hold
// the constants 1 and 0 that the beta and padding columns of A read) and Q/beta as
// [cch][oct][n = 16*KS][k = 16*KS + 8] (+ [8][16*KS + 8] per channel, see kShared); the
// 8-element row padding makes the eight 16-byte rows of every ldmatrix land in distinct bank
// groups (row stride 48, 80, 112 or 144 bytes).
// Q/beta come from a workspace that adaptive_conv2d_pack_q_mma_kernel fills once per call
// with the B operands' rows already built (beta column, zero padding): building them per
// round and block cost ~15 SASS instructions per element, more than the mma work for few
// channels per round. The rows a block stages are contiguous in it; rows n >= T of each
// matrix are never staged: shared memory is zeroed once per block and they stay zero.
// kShared (odd square kernels T = 8 m + 1, 2 or more output channels per block): the last
// tap's n8 tile would hold one real column per output channel (1/8 of its tanh useful), so
// instead one n8 tile per channel round holds the last tap of all oct output channels
// (column j = output channel j): every tanh of the block is then a useful one.
// Outputs: y accumulates in an fp32 C fragment across all input channels, written once.
#pragma once

#include "ptx.cuh"
#include "soft_tanh.cuh"
#include "tile_loaders.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// kMmaWarps, kMmaPixels, kMmaOct, kMmaMaxKs, mma_k, mma_row, mma_q_rows, mma_q_chunk: configs.h.

// The constants 1 (beta column) and 0 (padding columns) after each staged channel's box.
template <typename scalar_t>
__device__ __forceinline__ void stage_box_constants(scalar_t* __restrict__ xs, int nch, int box) {
  for (int c = threadIdx.x; c < nch; c += kThreads) {
    xs[c * (box + 2) + box] = ptx::from_float<scalar_t>(1.f);
    xs[c * (box + 2) + box + 1] = ptx::from_float<scalar_t>(0.f);
  }
}

// Columns 8 kc .. 8 kc + 7 of the B row of Q row qrow (= ((o * Cg + c) * T + n) of weight):
// Q[o, c, n, k] for k < T, beta[o, c, n] at k = T, zeros after, packed as one 16-byte store.
// Branch-free: clamped loads (always in the row), then selects. index_t: int where the
// caller knows the offsets fit (one IMAD.WIDE per load).
template <typename index_t, typename scalar_t>
__device__ __forceinline__ uint4 q_mma_chunk(const scalar_t* __restrict__ weight, const scalar_t* __restrict__ kbias,
                                             index_t qrow, int T, int kc) {
  const scalar_t zero = ptx::from_float<scalar_t>(0.f);
  const bool beta_here = T - 8 * kc < 8;  // column T is in this chunk
  const scalar_t b = beta_here && kbias != nullptr ? ldg(kbias + qrow) : zero;
  scalar_t v[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int k = 8 * kc + e;
    const scalar_t x = ldg(weight + (qrow * T + min(k, T - 1)));
    v[e] = k < T ? x : (k == T ? b : zero);
  }
  return make_uint4(ptx::pack2(v[0], v[1]), ptx::pack2(v[2], v[3]), ptx::pack2(v[4], v[5]), ptx::pack2(v[6], v[7]));
}

// B operands of output channels [o_first, o_first + no) x local input channels [c0, c0 + nc)
// as [no][nc][16 KS][16 KS + 8] (the fused backward's per-round staging): row n < T holds
// Q[o, c, n, 0..T-1] then beta[o, c, n] at column T; everything else is 0.
template <int KS, typename scalar_t>
__device__ __forceinline__ void stage_q_mma(scalar_t* __restrict__ qs, const scalar_t* __restrict__ weight,
                                            const scalar_t* __restrict__ kbias, const Geom& g, int o_first,
                                            int no, int c0, int nc) {
  constexpr int kK = mma_k(KS), kRow = mma_row(KS), kChunks = kK / 8;  // 16-byte chunks per row
  const int T = g.T;
  const int total = no * nc * kK * kChunks;
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const int kc = i % kChunks;
    const int r = i / kChunks;  // (oc, nn)
    const int nn = r % kK;
    const int oc = r / kK;  // ol * nc + cl
    uint4 w = make_uint4(0u, 0u, 0u, 0u);  // 0x0000 is +0 in float16 and bfloat16
    if (nn < T && 8 * kc <= T) {  // else the chunk is all padding
      const unsigned ol = static_cast<unsigned>(oc) / static_cast<unsigned>(nc);
      const int cl = oc - static_cast<int>(ol) * nc;
      w = q_mma_chunk<int>(weight, kbias, ((o_first + static_cast<int>(ol)) * g.Cg + (c0 + cl)) * T + nn, T, kc);
    }
    *reinterpret_cast<uint4*>(qs + r * kRow + 8 * kc) = w;
  }
}

// The input box of nch channels, [nch][bh][bw] at channel stride cstride, zero outside the
// image, 16-bit as it is (bw <= kThreads, planner-checked). The box rows (c, y) are taken R =
// kThreads / bw at a time: thread t owns column t % bw of rows t / bw, + R, + 2R, ...; its
// row, channel and both offsets advance by additions, so an element costs a bounds test, a
// load, a store and the steps (stage_box's flat index: ~36 SASS instructions an element).
template <typename scalar_t>
__device__ __forceinline__ void stage_box_mma(scalar_t* __restrict__ xs, const scalar_t* __restrict__ input,
                                              const Geom& g, int n, int c_first, int nch, int ih0, int iw0, int bh,
                                              int bw, int cstride) {
  const int R = kThreads / bw;
  const int r0 = static_cast<int>(threadIdx.x) / bw;
  if (r0 >= R) return;
  const int x = static_cast<int>(threadIdx.x) - r0 * bw;
  const bool col_in = static_cast<unsigned>(iw0 + x) < static_cast<unsigned>(g.W);
  int c = r0 / bh, y = r0 - c * bh;
  int goff = ((n * g.C + c_first + c) * g.H + ih0 + y) * g.W + iw0 + x;  // read only inside the image
  int soff = c * cstride + y * bw + x;
  const int gwrap = (g.H - bh) * g.W, swrap = cstride - bh * bw;
  while (c < nch) {
    scalar_t v{};
    if (col_in && static_cast<unsigned>(ih0 + y) < static_cast<unsigned>(g.H)) v = ldg(input + goff);
    xs[soff] = v;
    y += R;
    goff += R * g.W;
    soff += R * bw;
    while (y >= bh) {  // next channel (R may span several when boxes are short)
      y -= bh;
      ++c;
      goff += gwrap;
      soff += swrap;
    }
  }
}

// Builds the packed B operands of every (group, output-channel block, input channel): packed
// row (ol, n) holds Q[o, c, n, 0..T-1] then beta[o, c, n] at column T, zeros after (and all
// zeros for the block's missing output channels: o >= Og, shared-tile rows j >= oct).
template <int KS, typename scalar_t>
__global__ void __launch_bounds__(kThreads)
adaptive_conv2d_pack_q_mma_kernel(const Geom g, const FwdCfg cfg, const scalar_t* __restrict__ weight,
                                  const scalar_t* __restrict__ kbias, scalar_t* __restrict__ packed) {
  constexpr int kChunks = 2 * KS;  // 16-byte chunks per row
  const int T = g.T;
  const int Tr = cfg.q_shared ? T - 1 : T;
  const long long total = static_cast<long long>(g.G) * cfg.n_ot * g.Cg * cfg.q_rows * kChunks;
  for (long long i = static_cast<long long>(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += static_cast<long long>(gridDim.x) * kThreads) {
    const int kc = static_cast<int>(i % kChunks);
    long long r = i / kChunks;
    const int row = static_cast<int>(r % cfg.q_rows);
    r /= cfg.q_rows;
    const int c = static_cast<int>(r % g.Cg);
    r /= g.Cg;
    const int ot = static_cast<int>(r % cfg.n_ot);
    const int gi = static_cast<int>(r / cfg.n_ot);
    int ol = row - cfg.oct * Tr, nn = T - 1;  // the shared tile's row ol
    if (row < cfg.oct * Tr) {
      ol = row / Tr;
      nn = row - ol * Tr;
    }
    const int o = ot * cfg.oct + ol;
    uint4 w = make_uint4(0u, 0u, 0u, 0u);
    if (ol < cfg.oct && o < g.Og && 8 * kc <= T) {  // else the chunk is all padding
      w = q_mma_chunk<long long>(weight, kbias, ((static_cast<long long>(gi) * g.Og + o) * g.Cg + c) * T + nn, T, kc);
    }
    reinterpret_cast<uint4*>(packed)[i] = w;
  }
}

// Copies the packed B rows of nch input channels (contiguous from src) into their places in
// shared memory: channel cl at qs + cl * chunk, matrix ol's row n at (ol * 16 KS + n) * kRow,
// the shared tile's row j after the oct matrices. One row (2 KS 16-byte copies) per thread
// and step, so its place is worked out once per row; the divisions by the row counts are
// multiply-highs (cfg.q_rows_m, cfg.q_tr_m; planner-checked ranges) or, for a compile-time
// kTr > 0 rows per output channel, by a constant (kTr = 0: no per-channel rows, the 1x1
// kernel's shared tile holds all).
template <int KS, int kTr, typename scalar_t>
__device__ __forceinline__ void stage_packed_q(scalar_t* __restrict__ qs, const scalar_t* __restrict__ src,
                                               int nch, const FwdCfg& cfg, int Tr, int chunk) {
  constexpr int kK = mma_k(KS), kRow = mma_row(KS), kChunks = 2 * KS;
  const uint4* const s4 = reinterpret_cast<const uint4*>(src);
  const unsigned total = static_cast<unsigned>(nch * cfg.q_rows);
  const unsigned per_o = static_cast<unsigned>(cfg.oct * Tr), rows = static_cast<unsigned>(cfg.q_rows);
  for (unsigned r = threadIdx.x; r < total; r += kThreads) {  // unsigned: no sign fix-ups
    const unsigned cl = static_cast<unsigned>(div_by_magic(static_cast<int>(r), cfg.q_rows_m));
    const unsigned row = r - cl * rows;
    unsigned drow = cfg.oct * kK + (row - per_o);  // the shared tile's row
    if (row < per_o) {
      const unsigned ol = kTr > 0 ? row / (kTr > 0 ? kTr : 1) : static_cast<unsigned>(div_by_magic(static_cast<int>(row), cfg.q_tr_m));
      drow = ol * kK + (row - ol * Tr);
    }
    uint4* const dst = reinterpret_cast<uint4*>(qs + cl * chunk + drow * kRow);
    const uint4* const from = s4 + r * kChunks;
#pragma unroll
    for (int kc = 0; kc < kChunks; ++kc) dst[kc] = ldg(from + kc);
  }
}

// tanh(sigma) * X of the four C elements of n8 tile `tile` (columns 8 tile ..) as 16-bit
// products, laid out as half of an A fragment: p0 = row gq (pixel), p1 = row gq + 8, columns
// 2 tq, 2 tq + 1; xg / xg8: the A registers holding X at the same (pixel, column) places.
// When the tile's only real column is its first (T = 8 tile + 1: the last tile of every odd
// square kernel without the shared tile), columns 2 tq + 1 are padding (sigma 0, product 0),
// so one packed tanh of the two pixels' column 2 tq does instead of two (for tq > 0 that
// column is padding too: tanh(0) * X = 0). The test is uniform over the warp.
// soft: pixel row gq + 8's pair goes through the FMA-pipe tanh (soft_tanh.cuh) instead (a
// constant where the loops unroll).
template <typename scalar_t>
__device__ __forceinline__ void tile_products(const float (&c)[4], uint32_t xg, uint32_t xg8, int tile, int T,
                                              bool soft, uint32_t& p0, uint32_t& p1) {
  if (T - 8 * tile == 1) {
    const uint32_t t = ptx::tanh2<scalar_t>(ptx::pack2f<scalar_t>(c[0], c[2]));
    const uint32_t tx = ptx::hmul2<scalar_t>(t, (xg & 0xffffu) | (xg8 << 16));
    p0 = tx & 0xffffu;
    p1 = tx >> 16;
  } else {
    const uint32_t s1 = ptx::pack2f<scalar_t>(c[2], c[3]);
    p0 = ptx::hmul2<scalar_t>(ptx::tanh2<scalar_t>(ptx::pack2f<scalar_t>(c[0], c[1])), xg);
    p1 = ptx::hmul2<scalar_t>(soft ? soft_tanh::tanh2<scalar_t>(s1) : ptx::tanh2<scalar_t>(s1), xg8);
  }
}

// In full blocks, one tile in soft_tanh_every() of the (output channel, tile) sequence takes
// the FMA-pipe tanh for its second pair (0: none): per kernel, enough to bring the MUFU bound
// down to the issue bound in the static model (benchmarks/static_model.py).
template <int KS, int kTail>
__host__ __device__ constexpr int soft_tanh_every() {
  return (KS == 1 && kTail == 1) || (KS == 2 && kTail == 3) ? 2 : 0;
}
template <int kEvery>
__host__ __device__ constexpr bool soft_tanh_tile(int seq) {
  if constexpr (kEvery > 0) {
    return seq % kEvery == kEvery - 1;
  } else {
    return false;
  }
}

// The sums over (c, uv) on the tensor cores: the products of two n8 tiles (tile_products)
// form one A fragment, k 0..7 the first tile's columns, k 8..15 the second's, and B sends
// each half to its output channel (one column of ones per half: sel_channel), so that
// d[pixel][o] += the 16 products of the fragment in fp32: 1 mma per two tiles instead of
// unpacking, multiplying and adding 16 values per lane on the FMA pipe, and no quad
// shuffles at the end. d is the C layout: d0, d1 = pixel gq, output channels 2 tq, 2 tq + 1;
// d2, d3 = pixel gq + 8. A half waits in `a` for its partner (flush() ends a channel).
template <typename scalar_t>
struct ProductSum {
  float d[4] = {0.f, 0.f, 0.f, 0.f};
  uint32_t a[4] = {0u, 0u, 0u, 0u};
  uint32_t b0 = 0u;
  bool half = false;
  __device__ __forceinline__ void add(uint32_t p0, uint32_t p1, uint32_t sel) {
    if (!half) {
      a[0] = p0;
      a[1] = p1;
      b0 = sel;
      half = true;
    } else {
      a[2] = p0;
      a[3] = p1;
      ptx::mma_m16n8k16<scalar_t>(d, a, b0, sel);
      half = false;
    }
  }
  __device__ __forceinline__ void flush() {
    if (half) {
      a[2] = a[3] = 0u;
      ptx::mma_m16n8k16<scalar_t>(d, a, b0, 0u);
      half = false;
    }
  }
};

// This lane's B register of a reduction half (rows k = 2 tq, 2 tq + 1 of the half, column
// n = gq): ones where k's product belongs to output channel n. Per-tile halves: all of k
// to channel ol; the shared tile's half: k = output channel (the identity).
template <typename scalar_t>
__device__ __forceinline__ uint32_t sel_channel(int gq, int ol) {
  const uint32_t one = ptx::bits16(ptx::from_float<scalar_t>(1.f));
  return gq == ol ? one | (one << 16) : 0u;
}
template <typename scalar_t>
__device__ __forceinline__ uint32_t sel_identity(int gq, int tq) {
  const uint32_t one = ptx::bits16(ptx::from_float<scalar_t>(1.f));
  return (gq == 2 * tq ? one : 0u) | (gq == 2 * tq + 1 ? one << 16 : 0u);
}

// Min. blocks per SM = 1 says "no register cap below 255": without it ptxas caps KS = 1 at
// 80 and KS = 3 at 128 registers and spills (nvcc 13.0); with it the instantiations need
// 96-183 registers and spill nothing (benchmarks/results/cuda-sm90-static_*.md).
// kTail >= 0: the kernel for T = 8 kTail + 1 exactly (odd square kernels 1x1, 3x3, 5x5, 7x7:
// kTail = 0, 1, 3, 6), with the tile count and the one-column last tile known at compile time;
// kTail = -1: any T with T + 1 <= 16 KS. kShared (kTail >= 0 only): the last tap of the
// block's output channels is one n8 tile of its own (cfg.q_shared, see the top of the file).
template <typename scalar_t, int KS, int kTail, bool kShared>
__global__ void __launch_bounds__(kThreads, 1)
adaptive_conv2d_fwd_mma_kernel(const Geom g, const FwdCfg cfg, const scalar_t* __restrict__ input,
                               const scalar_t* __restrict__ packed_q, const scalar_t* __restrict__ bias,
                               scalar_t* __restrict__ out) {
  static_assert(kTail < 0 || 8 * kTail + 2 <= mma_k(KS), "T + 1 must fit in K");
  static_assert(!kShared || kTail >= 0, "the shared last-tap tile needs T = 8 kTail + 1");
  constexpr int kK = mma_k(KS), kRow = mma_row(KS);
  extern __shared__ __align__(16) unsigned char smem_raw[];
  scalar_t* const qs = reinterpret_cast<scalar_t*>(smem_raw);  // [cch][oct][kK][kRow] (+ shared tile)
  scalar_t* const xs = qs + cfg.off_box;                         // [cch][box + 2]
  const int xstride = cfg.box + 2;
  const int T = kTail >= 0 ? 8 * kTail + 1 : g.T;  // a constant in the odd-square kernels
  const int Tr = kShared ? T - 1 : T;               // taps of the per-output-channel tiles
  const int qchunk = mma_q_chunk(KS, cfg.oct, kShared);

  const int tid = threadIdx.x;
  const int warp = tid >> 5, lane = tid & 31, gq = lane >> 2, tq = lane & 3;
  const bool warp_active = warp * 16 < cfg.P;

  // Rows n >= Tr of every matrix are never staged: zero them (all of Q's part) once.
  for (int i = tid; i < cfg.off_box / 8; i += kThreads) reinterpret_cast<uint4*>(qs)[i] = make_uint4(0u, 0u, 0u, 0u);

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
  // Box offset of the last tap (the shared tile multiplies it with X there).
  const int koff_last = ((T - 1) / g.kW) * g.dH * cfg.bw + ((T - 1) % g.kW) * g.dW;
  // B rows this lane addresses for ldmatrix.x4: matrix m = lane / 8 is (n-tile m / 2, k half m % 2).
  const int brow = ((lane & 7) + 8 * (lane >> 4)) * kRow + 8 * ((lane >> 3) & 1);
  // The shared tile (one n8 tile, rows j = output channels): matrix m = k columns 8 m ..
  // 8 m + 7 (two k16 steps per ldmatrix.x4); with one step left, matrices 2, 3 repeat 0, 1.
  const int brow_shared = cfg.oct * kK * kRow + (lane & 7) * kRow;
  const int bcol_pair = 8 * (lane >> 3), bcol_single = 8 * ((lane >> 3) & 1);
  const uint32_t sel_shared = sel_identity<scalar_t>(gq, tq);

  for (long long item = blockIdx.x; item < cfg.items; item += gridDim.x) {
    const FwdItem it = fwd_item(item, cfg, g);
    const int o0 = it.ot * cfg.oct;
    const int oct_a = min(cfg.oct, g.Og - o0);
    const int ih0 = it.ty * cfg.toh * g.sH - g.pH;
    const int iw0 = it.tx * cfg.tow * g.sW - g.pW;
    const scalar_t* const q_src =
        packed_q + static_cast<long long>((it.gi * cfg.n_ot + it.ot) * g.Cg) * cfg.q_rows * kK;

    ProductSum<scalar_t> y;  // y.d: pixels gq, gq + 8 x output channels 2 tq, 2 tq + 1

    for (int c0 = 0; c0 < g.Cg; c0 += cfg.cch) {
      const int cch_a = min(cfg.cch, g.Cg - c0);
      __syncthreads();  // the previous round's readers are done with xs / qs (and the zeroing)
      stage_box_mma(xs, input, g, it.n, it.gi * g.Cg + c0, cch_a, ih0, iw0, cfg.bh, cfg.bw, xstride);
      stage_box_constants(xs, cch_a, cfg.box);
      stage_packed_q<KS, kTail >= 0 ? (kShared ? 8 * kTail : 8 * kTail + 1) : -1>(
          qs, q_src + static_cast<long long>(c0) * cfg.q_rows * kK, cch_a, cfg, Tr, qchunk);
      __syncthreads();
      if (!warp_active) continue;

      // The channel loop three times: for full blocks (kMmaOct output channels: all but a
      // group's last) and one-channel blocks (depthwise) the output-channel loop unrolls
      // without a test and the pairing of product halves (ProductSum) is known at compile
      // time; other blocks test per output channel (kNo = 0).
      auto channels = [&](auto n_out) {
        constexpr int kNo = decltype(n_out)::value;
        constexpr bool kFull = kNo == kMmaOct;
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
          const scalar_t* const qc = qs + cl * qchunk;

#pragma unroll
          for (int ol = 0; ol < kMmaOct; ++ol) {
            if (kNo == 0 ? ol >= oct_a : ol >= kNo) break;
            const scalar_t* const q = qc + ol * kK * kRow + brow;
            const uint32_t sel = sel_channel<scalar_t>(gq, ol);
#pragma unroll
            for (int np = 0; np < KS; ++np) {  // n-tiles 2 np and 2 np + 1: uv 16 np .. 16 np + 15
              if (16 * np >= Tr) break;
              const bool hi_tile = 16 * np + 8 < Tr;
              float c_lo[4] = {0.f, 0.f, 0.f, 0.f}, c_hi[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
              for (int ks = 0; ks < KS; ++ks) {
                uint32_t b[4];
                ptx::ldmatrix_x4(b, q + 16 * np * kRow + 16 * ks);
                ptx::mma_m16n8k16<scalar_t>(c_lo, a[ks], b[0], b[1]);
                if (hi_tile) ptx::mma_m16n8k16<scalar_t>(c_hi, a[ks], b[2], b[3]);
              }
              // C column uv of n-tile 2 np (+1) sits where A column uv does: a[np][0..1] ([2..3]).
              uint32_t p0, p1;
              constexpr int kEvery = kFull ? soft_tanh_every<KS, kTail>() : 0;
              constexpr int kTiles = kTail >= 0 ? (kShared ? kTail : kTail + 1) : 0;  // n8 tiles per channel
              const int seq = ol * kTiles + 2 * np;  // the tile's place in the (channel, tile) sequence
              tile_products<scalar_t>(c_lo, a[np][0], a[np][1], 2 * np, T, soft_tanh_tile<kEvery>(seq), p0, p1);
              y.add(p0, p1, sel);
              if (hi_tile) {
                tile_products<scalar_t>(c_hi, a[np][2], a[np][3], 2 * np + 1, T, soft_tanh_tile<kEvery>(seq + 1), p0,
                                        p1);
                y.add(p0, p1, sel);
              }
            }
          }

          if constexpr (kShared) {  // C[p][j] = sigma of pixel p, output channel o0 + j, tap T - 1
            float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int ks = 0; ks < KS; ks += 2) {
              uint32_t b[4];
              ptx::ldmatrix_x4(b, qc + brow_shared + 16 * ks + (ks + 1 < KS ? bcol_pair : bcol_single));
              ptx::mma_m16n8k16<scalar_t>(c, a[ks], b[0], b[1]);
              if (ks + 1 < KS) ptx::mma_m16n8k16<scalar_t>(c, a[ks + 1], b[2], b[3]);
            }
            const scalar_t x0 = xb[pbase[0] + koff_last], x1 = xb[pbase[1] + koff_last];  // X of tap T - 1
            uint32_t p0, p1;
            tile_products<scalar_t>(c, ptx::pack2(x0, x0), ptx::pack2(x1, x1), 0, 0, false, p0, p1);  // (T = 0: all columns real)
            y.add(p0, p1, sel_shared);
          }
          y.flush();
        }
      };
      // (K = 48, 64: the unrolled 8-channel copy needs more than 255 registers; ptxas spills.)
      if (KS <= 2 && oct_a == kMmaOct) {
        channels(std::integral_constant<int, KS <= 2 ? kMmaOct : 0>{});
      } else if (oct_a == 1) {
        channels(std::integral_constant<int, 1>{});
      } else {
        channels(std::integral_constant<int, 0>{});
      }
    }

    if (warp_active) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {  // lane (gq, tq) holds output channels 2 tq, 2 tq + 1
        const int ol = 2 * tq + e;
        if (ol >= oct_a) break;
        const int o = it.gi * g.Og + o0 + ol;
        const float b = bias != nullptr ? ptx::to_float(ldg(bias + o)) : 0.f;
#pragma unroll
        for (int rr = 0; rr < 2; ++rr) {
          const int p = warp * 16 + gq + 8 * rr;
          const int oh = it.ty * cfg.toh + py[rr];
          const int ow = it.tx * cfg.tow + px[rr];
          if (p < cfg.P && oh < g.Ho && ow < g.Wo) {
            out[((it.n * g.O + o) * g.Ho + oh) * g.Wo + ow] = ptx::from_float<scalar_t>(y.d[2 * rr + e] + b);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
