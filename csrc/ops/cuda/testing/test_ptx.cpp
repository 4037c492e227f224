// Unit tests of the CPU models of the PTX instructions (testing/ptx/*.h) that the emulated
// tensor-core kernels run on: each model against a naive computation, with the fragments
// built from the lane's side exactly as the PTX ISA states them (kernels/ptx.cuh).
//
//   g++ -std=c++20 -O1 -pthread -I/usr/local/cuda/include -Icsrc
//       csrc/ops/cuda/testing/test_ptx.cpp -o /tmp/test_ptx && /tmp/test_ptx
// clang-format off
#include "ptx/emulation.h"  // the runtime and the instruction models, before any kernel header
#include "ops/cuda/kernels/soft_tanh.cuh"
// clang-format on

#include <atomic>
#include <random>
#include <string>

namespace ptx = adaptive_conv_ext::cuda::ptx;
namespace soft_tanh = adaptive_conv_ext::cuda::soft_tanh;

std::atomic<int> g_bad{0};
int g_failed_tests = 0;

void expect(bool ok, const char* what, int lane) {
  if (!ok && g_bad.fetch_add(1) < 8) std::printf("    lane %d: %s\n", lane, what);
}

void run_warp(const char* name, const std::function<void()>& body) {
  g_bad = 0;
  emu::launch(1, 32, 0, body);
  std::printf("%s %s\n", g_bad == 0 ? "ok  " : "FAIL", name);
  if (g_bad != 0) ++g_failed_tests;
}

// mma.m16n8k16 against a naive product, fragments from the lane's side.
template <typename T>
void test_mma(const char* name, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  float A[16][16], B[16][8], C[16][8];
  for (auto& r : A) for (float& v : r) v = ptx::to_float(ptx::from_float<T>(nd(rng)));
  for (auto& r : B) for (float& v : r) v = ptx::to_float(ptx::from_float<T>(nd(rng)));
  for (auto& r : C) for (float& v : r) v = nd(rng);
  run_warp(name, [&] {
    const int lane = emu::lane_id(), g = lane / 4, t = lane % 4;
    auto p = [](float lo, float hi) { return ptx::pack2f<T>(lo, hi); };
    const uint32_t a[4] = {p(A[g][2 * t], A[g][2 * t + 1]), p(A[g + 8][2 * t], A[g + 8][2 * t + 1]),
                           p(A[g][2 * t + 8], A[g][2 * t + 9]), p(A[g + 8][2 * t + 8], A[g + 8][2 * t + 9])};
    const uint32_t b0 = p(B[2 * t][g], B[2 * t + 1][g]), b1 = p(B[2 * t + 8][g], B[2 * t + 9][g]);
    float d[4] = {C[g][2 * t], C[g][2 * t + 1], C[g + 8][2 * t], C[g + 8][2 * t + 1]};
    ptx::mma_m16n8k16<T>(d, a, b0, b1);
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int i = 0; i < 4; ++i) {
      double ref = C[rows[i]][cols[i]], mag = std::fabs(ref);
      for (int k = 0; k < 16; ++k) {
        ref += double(A[rows[i]][k]) * B[k][cols[i]];
        mag += std::fabs(double(A[rows[i]][k]) * B[k][cols[i]]);
      }
      expect(std::fabs(d[i] - ref) <= 1e-6 * mag, "D != A*B + C", lane);
    }
  });
}

// ldmatrix.x4: register i of lane (g, t) = row g, columns 2t, 2t+1 of matrix i;
// .trans: rows 2t, 2t+1 of column g of matrix i.
template <bool kTrans>
void test_ldmatrix(const char* name) {
  constexpr int kStride = 24;  // elements per row: 48 bytes, as the kernel pads its rows
  alignas(16) static uint16_t sm[4 * 8 * kStride];
  for (int i = 0; i < 4 * 8 * kStride; ++i) sm[i] = 0xdead;
  auto val = [](int m, int r, int c) { return static_cast<uint16_t>(m * 64 + r * 8 + c); };
  for (int m = 0; m < 4; ++m)
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c) sm[(m * 8 + r) * kStride + c] = val(m, r, c);
  run_warp(name, [&] {
    const int lane = emu::lane_id(), g = lane / 4, t = lane % 4;
    uint32_t r[4];
    const uint16_t* row = sm + ((lane / 8) * 8 + lane % 8) * kStride;
    if (kTrans) {
      ptx::ldmatrix_x4_trans(r, row);
    } else {
      ptx::ldmatrix_x4(r, row);
    }
    for (int m = 0; m < 4; ++m) {
      const uint16_t lo = kTrans ? val(m, 2 * t, g) : val(m, g, 2 * t);
      const uint16_t hi = kTrans ? val(m, 2 * t + 1, g) : val(m, g, 2 * t + 1);
      expect((r[m] & 0xffff) == lo && (r[m] >> 16) == hi, "wrong element", lane);
    }
  });
}

// The backward's use: B (K x N) stored K-major (rows k of N contiguous values: Q[uv][u'v']
// read as Q^T, or the patch [pixel][tap]), read with ldmatrix.x4.trans as b0/b1 of two n8
// tiles; and A (M x K) stored K-major too (dsigma [pixel][uv] read as dsigma^T), read with
// ldmatrix.x4.trans as a0..a3. The products equal the naive ones.
template <typename T>
void test_ldmatrix_trans_mma(const char* name, unsigned seed) {
  constexpr int kK = 32, kRow = 16 + 8;  // two k16 steps; rows of 16 values, padded
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  alignas(16) static T bs[kK * kRow], as[kK * kRow];
  float A[16][kK], B[kK][16];
  for (int k = 0; k < kK; ++k)
    for (int n = 0; n < 16; ++n) {
      B[k][n] = ptx::to_float(ptx::from_float<T>(nd(rng)));
      bs[k * kRow + n] = ptx::from_float<T>(B[k][n]);
      A[n][k] = ptx::to_float(ptx::from_float<T>(nd(rng)));
      as[k * kRow + n] = ptx::from_float<T>(A[n][k]);
    }
  run_warp(name, [&] {
    const int lane = emu::lane_id(), g = lane / 4, t = lane % 4, i = lane / 8, r = lane % 8;
    float d[2][4] = {};
    for (int ks = 0; ks < kK / 16; ++ks) {
      uint32_t a[4], b[4];
      // A: matrix i = (m half i & 1, k half i >> 1); B: matrix i = (k half i & 1, n-tile i >> 1).
      ptx::ldmatrix_x4_trans(a, as + (16 * ks + r + 8 * (i >> 1)) * kRow + 8 * (i & 1));
      ptx::ldmatrix_x4_trans(b, bs + (16 * ks + r + 8 * (i & 1)) * kRow + 8 * (i >> 1));
      ptx::mma_m16n8k16<T>(d[0], a, b[0], b[1]);
      ptx::mma_m16n8k16<T>(d[1], a, b[2], b[3]);
    }
    for (int nt = 0; nt < 2; ++nt)
      for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2), col = nt * 8 + 2 * t + e % 2;
        double ref = 0, mag = 0;
        for (int k = 0; k < kK; ++k) {
          ref += double(A[row][k]) * B[k][col];
          mag += std::fabs(double(A[row][k]) * B[k][col]);
        }
        expect(std::fabs(d[nt][e] - ref) <= 1e-6 * mag, "ldmatrix.trans A, B x mma != product", lane);
      }
  });
}

// The kernel's use: B (K x N) stored as rows n of K contiguous values (Q[uv][u'v']), read
// with ldmatrix.x4 as the b0/b1 registers of two n8 tiles, times A, equals the product.
template <typename T>
void test_ldmatrix_mma(const char* name, unsigned seed) {
  constexpr int kK = 32, kRow = kK + 8;  // two k16 steps, padded rows as in the kernel
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  alignas(16) static T bs[16 * kRow];
  float A[16][kK], B[kK][16];
  for (auto& r : A) for (float& v : r) v = ptx::to_float(ptx::from_float<T>(nd(rng)));
  for (int k = 0; k < kK; ++k)
    for (int n = 0; n < 16; ++n) {
      B[k][n] = ptx::to_float(ptx::from_float<T>(nd(rng)));
      bs[n * kRow + k] = ptx::from_float<T>(B[k][n]);
    }
  run_warp(name, [&] {
    const int lane = emu::lane_id(), g = lane / 4, t = lane % 4;
    float d[2][4] = {};
    for (int ks = 0; ks < kK / 16; ++ks) {
      const int c0 = 16 * ks;
      auto p = [](float lo, float hi) { return ptx::pack2f<T>(lo, hi); };
      const uint32_t a[4] = {p(A[g][c0 + 2 * t], A[g][c0 + 2 * t + 1]), p(A[g + 8][c0 + 2 * t], A[g + 8][c0 + 2 * t + 1]),
                             p(A[g][c0 + 2 * t + 8], A[g][c0 + 2 * t + 9]),
                             p(A[g + 8][c0 + 2 * t + 8], A[g + 8][c0 + 2 * t + 9])};
      uint32_t b[4];  // matrices: (n-tile 0, k lo), (n-tile 0, k hi), (n-tile 1, k lo), (n-tile 1, k hi)
      ptx::ldmatrix_x4(b, bs + ((lane & 7) + 8 * (lane >> 4)) * kRow + c0 + 8 * ((lane >> 3) & 1));
      ptx::mma_m16n8k16<T>(d[0], a, b[0], b[1]);
      ptx::mma_m16n8k16<T>(d[1], a, b[2], b[3]);
    }
    for (int nt = 0; nt < 2; ++nt)
      for (int i = 0; i < 4; ++i) {
        const int row = g + 8 * (i / 2), col = nt * 8 + 2 * t + i % 2;
        double ref = 0, mag = 0;
        for (int k = 0; k < kK; ++k) {
          ref += double(A[row][k]) * B[k][col];
          mag += std::fabs(double(A[row][k]) * B[k][col]);
        }
        expect(std::fabs(d[nt][i] - ref) <= 1e-6 * mag, "ldmatrix B x A != product", lane);
      }
  });
}

// tanh.approx.x2: each half is tanh of that half, within two units in the last place
// (the model's one ulp plus rounding), halves independent and in order.
template <typename T>
void test_tanh2(const char* name) {
  run_warp(name, [&] {
    const int lane = emu::lane_id();
    const float ulp = std::is_same<T, __half>::value ? 1.f / 1024 : 1.f / 128;
    for (int i = lane; i < 4096; i += 32) {
      const float xlo = -6.f + 12.f * i / 4096, xhi = 0.37f - 5.f * i / 4096;
      const uint32_t r = ptx::pack2f<T>(xlo, xhi);
      const uint32_t y = ptx::tanh2<T>(r);
      const float elo = std::tanh(ptx::lo_float<T>(r)), ehi = std::tanh(ptx::hi_float<T>(r));
      expect(std::fabs(ptx::lo_float<T>(y) - elo) <= 2 * ulp * std::max(std::fabs(elo), 1e-3f), "low half", lane);
      expect(std::fabs(ptx::hi_float<T>(y) - ehi) <= 2 * ulp * std::max(std::fabs(ehi), 1e-3f), "high half", lane);
      expect(std::fabs(ptx::lo_float<T>(y)) <= 1.f && std::fabs(ptx::hi_float<T>(y)) <= 1.f, "|tanh| > 1", lane);
    }
  });
}

// tanh.approx.f32: within 2^-11 (relative) of tanh, |y| <= 1, odd inputs kept apart.
void test_tanh_f32() {
  run_warp("tanh.approx.f32 model vs tanh", [&] {
    const int lane = emu::lane_id();
    for (int i = lane; i < 4096; i += 32) {
      const float x = -9.f + 18.f * i / 4096;
      const float y = ptx::tanh_f32(x), e = std::tanh(x);
      expect(std::fabs(y - e) <= (0x1p-11f + 0x1p-23f) * std::fabs(e), "relative error > 2^-11 (+ rounding)", lane);
      expect(std::fabs(y) <= 1.f, "|tanh| > 1", lane);
    }
  });
}

// mul.rn.{f16,bf16}x2: each half the product of its halves, correctly rounded (checked
// against the double product rounded once), signs and zeros kept, halves independent.
template <typename T>
void test_hmul2(const char* name) {
  run_warp(name, [&] {
    const int lane = emu::lane_id();
    for (int i = lane; i < 4096; i += 32) {
      const float alo = -3.f + 6.f * i / 4096, ahi = 0.73f - 2.f * i / 4096;
      const float blo = 1.7f - 3.1f * ((i * 37) % 4096) / 4096, bhi = -250.f + 500.f * ((i * 11) % 4096) / 4096;
      const uint32_t a = ptx::pack2f<T>(alo, ahi), b = ptx::pack2f<T>(blo, bhi);
      const uint32_t y = ptx::hmul2<T>(a, b);
      const double elo = double(ptx::lo_float<T>(a)) * ptx::lo_float<T>(b);
      const double ehi = double(ptx::hi_float<T>(a)) * ptx::hi_float<T>(b);
      expect(ptx::lo_float<T>(y) == ptx::lo_float<T>(ptx::pack2f<T>(float(elo), 0.f)), "low half", lane);
      expect(ptx::hi_float<T>(y) == ptx::lo_float<T>(ptx::pack2f<T>(float(ehi), 0.f)), "high half", lane);
    }
    const uint32_t z = ptx::hmul2<T>(ptx::pack2f<T>(-0.f, 2.f), ptx::pack2f<T>(3.f, -0.f));
    expect(z == ptx::pack2f<T>(-0.f, -0.f), "signed zeros", lane);
  });
}

// fma.rn.{f16,bf16}x2: each half within half a unit in the last place of a * b + c (the
// exact value in double); min.NaN: the smaller half, NaN when either is NaN.
template <typename T>
void test_hfma2_hmin2(const char* name) {
  run_warp(name, [&] {
    const int lane = emu::lane_id();
    const float ulp = std::is_same<T, __half>::value ? 1.f / 1024 : 1.f / 128;
    for (int i = lane; i < 4096; i += 32) {
      const float a0 = -3.f + 6.f * i / 4096, b0 = 0.6f - 1.3f * ((i * 37) % 4096) / 4096;
      const float c0 = 2.f - 4.f * ((i * 11) % 4096) / 4096;
      const uint32_t a = ptx::pack2f<T>(a0, -a0), b = ptx::pack2f<T>(b0, 0.5f * b0), c = ptx::pack2f<T>(c0, 0.25f);
      const uint32_t y = ptx::hfma2<T>(a, b, c);
      const double elo = double(ptx::lo_float<T>(a)) * ptx::lo_float<T>(b) + ptx::lo_float<T>(c);
      const double ehi = double(ptx::hi_float<T>(a)) * ptx::hi_float<T>(b) + ptx::hi_float<T>(c);
      expect(std::fabs(ptx::lo_float<T>(y) - elo) <= 0.5 * ulp * std::max(std::fabs(elo), 1.0 / 64) + 1e-7, "fma low half", lane);
      expect(std::fabs(ptx::hi_float<T>(y) - ehi) <= 0.5 * ulp * std::max(std::fabs(ehi), 1.0 / 64) + 1e-7, "fma high half", lane);
      const uint32_t m = ptx::hmin2_nan<T>(a, b);
      expect(ptx::lo_float<T>(m) == std::min(ptx::lo_float<T>(a), ptx::lo_float<T>(b)), "min low half", lane);
      expect(ptx::hi_float<T>(m) == std::min(ptx::hi_float<T>(a), ptx::hi_float<T>(b)), "min high half", lane);
    }
    const uint32_t n = ptx::hmin2_nan<T>(ptx::pack2f<T>(NAN, 1.f), ptx::pack2f<T>(0.f, NAN));
    expect(std::isnan(ptx::lo_float<T>(n)) && std::isnan(ptx::hi_float<T>(n)), "min.NaN keeps NaN", lane);
  });
}

// The FMA-pipe tanh (kernels/soft_tanh.cuh) over every 16-bit input: within its stated
// absolute error of tanh for finite inputs, odd, +-Inf -> +-P(1), NaN -> NaN.
template <typename T>
void test_soft_tanh(const char* name, float bound) {
  run_warp(name, [&] {
    const int lane = emu::lane_id();
    for (uint32_t b = lane; b < 0x10000u; b += 32) {
      const uint32_t r = b | ((b ^ 0x8000u) << 16);  // x and -x
      const uint32_t y = soft_tanh::tanh2<T>(r);
      const float x = ptx::lo_float<T>(r), ylo = ptx::lo_float<T>(y), yhi = ptx::hi_float<T>(y);
      if (std::isnan(x)) {
        expect(std::isnan(ylo) && std::isnan(yhi), "NaN in, NaN out", lane);
      } else {
        expect(std::fabs(ylo - std::tanh(x)) <= bound, "error above the stated bound", lane);
        expect(ylo == -yhi, "not odd", lane);
      }
    }
  });
}

void test_cp_async() {
  alignas(16) static unsigned char src[64], dst[64];
  for (int i = 0; i < 64; ++i) src[i] = static_cast<unsigned char>(i + 1);
  std::memset(dst, 0xee, 64);
  run_warp("cp.async 4/8/16 bytes, zero-fill", [&] {
    const int lane = emu::lane_id();
    if (lane == 0) ptx::cp_async<16>(dst, src, true);
    if (lane == 1) ptx::cp_async<8>(dst + 16, src + 16, true);
    if (lane == 2) ptx::cp_async<4>(dst + 24, src + 24, true);
    if (lane == 3) ptx::cp_async<16>(dst + 32, src + 32, false);
    ptx::cp_async_commit();
    ptx::cp_async_wait_all();
    emu::g_warps[0]->bar.wait();
    for (int i = 0; i < 28; ++i) expect(dst[i] == src[i], "copied byte", lane);
    for (int i = 28; i < 32; ++i) expect(dst[i] == 0xee, "byte outside the copies", lane);
    for (int i = 32; i < 48; ++i) expect(dst[i] == 0, "zero-filled byte", lane);
  });
}

void test_shfl_xor() {
  run_warp("shfl.bfly (quad reduction)", [&] {
    const int lane = emu::lane_id();
    float v = static_cast<float>(lane);
    v += ptx::shfl_xor(v, 1);
    v += ptx::shfl_xor(v, 2);
    const int q = lane & ~3;
    expect(v == static_cast<float>(4 * q + 6), "quad sum", lane);
  });
}

void test_shfl_idx() {
  run_warp("shfl.idx (quad broadcast, reversed lanes)", [&] {
    const int lane = emu::lane_id();
    const uint32_t v = 0x10000u * static_cast<uint32_t>(lane) + 7u;
    for (int k = 0; k < 4; ++k) {
      const uint32_t w = ptx::shfl_idx(v, (lane & ~3) | k);
      expect(w == 0x10000u * static_cast<uint32_t>((lane & ~3) | k) + 7u, "lane k of the quad", lane);
    }
    expect(ptx::shfl_idx(v, 31 - lane) == 0x10000u * static_cast<uint32_t>(31 - lane) + 7u, "reversed lane", lane);
  });
}

int main() {
  test_mma<__half>("mma.m16n8k16 f16 fragment layout vs naive product", 1);
  test_mma<__nv_bfloat16>("mma.m16n8k16 bf16 fragment layout vs naive product", 2);
  test_ldmatrix<false>("ldmatrix.x4 fragment layout");
  test_ldmatrix_mma<__half>("ldmatrix.x4 B operand + mma f16 vs naive product (k = 32)", 3);
  test_ldmatrix_mma<__nv_bfloat16>("ldmatrix.x4 B operand + mma bf16 vs naive product (k = 32)", 4);
  test_ldmatrix<true>("ldmatrix.x4.trans fragment layout");
  test_ldmatrix_trans_mma<__half>("ldmatrix.x4.trans A and B operands + mma f16 vs naive product (k = 32)", 5);
  test_ldmatrix_trans_mma<__nv_bfloat16>("ldmatrix.x4.trans A and B operands + mma bf16 vs naive product (k = 32)", 6);
  test_tanh2<__half>("tanh.approx.f16x2 model vs tanh");
  test_tanh2<__nv_bfloat16>("tanh.approx.bf16x2 model vs tanh");
  test_tanh_f32();
  test_hmul2<__half>("mul.rn.f16x2 model vs the rounded product");
  test_hmul2<__nv_bfloat16>("fma.rn.bf16x2 (-0 addend) model vs the rounded product");
  test_hfma2_hmin2<__half>("fma.rn.f16x2 and min.NaN.f16x2 models");
  test_hfma2_hmin2<__nv_bfloat16>("fma.rn.bf16x2 and min.NaN.bf16x2 models");
  test_soft_tanh<__half>("FMA-pipe tanh f16x2 (soft_tanh.cuh), every input", 2.5e-3f);
  test_soft_tanh<__nv_bfloat16>("FMA-pipe tanh bf16x2 (soft_tanh.cuh), every input", 7e-3f);
  test_cp_async();
  test_shfl_xor();
  test_shfl_idx();
  std::printf("%s: %d failed instruction test(s)\n", g_failed_tests ? "FAILED" : "PASSED", g_failed_tests);
  return g_failed_tests ? 1 : 0;
}
