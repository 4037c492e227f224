// tanh of both halves of a packed 16-bit register on the FMA pipe (no MUFU).
//
// The tensor-core forward is bound by the special-function unit: 16 results per SM per
// clock, and the packed tanh.approx.{f16x2,bf16x2} is two MUFU instructions. Where the warp
// has issue slots to spare, a share of the pairs goes through this instead: 10 packed
// instructions per pair on the FMA pipe, none on the MUFU.
//
//   tanh(x) = sign(x) * |P(u)|,  u = min(|x| * 2 / c - 1, 1) in [-1, 1],  c = 3.25,
//
// P of degree 6: a least-squares Chebyshev fit of tanh on [0, c], evaluated by Horner in the
// 16-bit type itself. |x| >= c gives P(1) = tanh(c) - ~1e-3. Max abs error over all inputs
// (16-bit arithmetic, testing/test_ptx.cpp test_soft_tanh): bfloat16 6.7e-3 (its own rounding
// near 1: 3.9e-3), float16 2.4e-3; NaN propagates (min.NaN), +-Inf give +-P(1).
#pragma once

#include "ptx.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace soft_tanh {

constexpr int kDegree = 6;
constexpr float kClamp = 3.25f;
// P's coefficients (ascending powers of u) and the constants 2 / c, -1, 1, as 16-bit bit
// patterns of each type (rounded to nearest from the float fit):
// 0.925416896, 0.227981711, -0.352562845, 0.372576563, -0.176964987, -0.101554418, 0.102766742.
template <typename T>
struct Bits;
template <>
struct Bits<__nv_bfloat16> {
  __host__ __device__ static constexpr uint16_t coef(int k) {
    constexpr uint16_t c[kDegree + 1] = {0x3f6d, 0x3e69, 0xbeb5, 0x3ebf, 0xbe35, 0xbdd0, 0x3dd2};
    return c[k];
  }
  static constexpr uint16_t two_over_c = 0x3f1e, minus_one = 0xbf80, one = 0x3f80;
};
template <>
struct Bits<__half> {
  __host__ __device__ static constexpr uint16_t coef(int k) {
    constexpr uint16_t c[kDegree + 1] = {0x3b67, 0x334c, 0xb5a4, 0x35f6, 0xb1aa, 0xae80, 0x2e94};
    return c[k];
  }
  static constexpr uint16_t two_over_c = 0x38ec, minus_one = 0xbc00, one = 0x3c00;
};

__host__ __device__ constexpr uint32_t both(uint16_t b) { return static_cast<uint32_t>(b) * 0x10001u; }

template <typename T>
__device__ __forceinline__ uint32_t tanh2(uint32_t x) {
  using B = Bits<T>;
  uint32_t u = ptx::hfma2<T>(x & 0x7fff7fffu, both(B::two_over_c), both(B::minus_one));
  u = ptx::hmin2_nan<T>(u, both(B::one));
  uint32_t p = both(B::coef(kDegree));
#pragma unroll
  for (int k = kDegree - 1; k >= 0; --k) p = ptx::hfma2<T>(p, u, both(B::coef(k)));
  return (p & 0x7fff7fffu) | (x & 0x80008000u);  // |P| with x's sign (one LOP3)
}

}  // namespace soft_tanh
}  // namespace cuda
}  // namespace adaptive_conv_ext
