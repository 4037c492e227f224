// CPU models of the packed 16-bit arithmetic (each half independently, low half = lower
// column): mul.rn (ptx::hmul2; bf16x2 as fma with a -0 addend), fma.rn (hfma2) and min.NaN
// (hmin2_nan). The product of two 16-bit values is exact in float (at most 22 significant
// bits), so hmul2 is one rounding to the 16-bit type, as on the GPU. hfma2 adds in double
// and rounds (through float) to the 16-bit type: a second rounding the hardware does not
// have, which can differ from it by one unit in the last place in rare ties.
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

template <typename T>
uint32_t hmul2(uint32_t a, uint32_t b) {
  return pack2f<T>(lo_float<T>(a) * lo_float<T>(b), hi_float<T>(a) * hi_float<T>(b));
}

template <typename T>
uint32_t hfma2(uint32_t a, uint32_t b, uint32_t c) {
  auto f = [](float x, float y, float z) { return static_cast<float>(static_cast<double>(x) * y + z); };
  return pack2f<T>(f(lo_float<T>(a), lo_float<T>(b), lo_float<T>(c)), f(hi_float<T>(a), hi_float<T>(b), hi_float<T>(c)));
}

template <typename T>
uint32_t hmin2_nan(uint32_t a, uint32_t b) {
  auto m = [](float x, float y) { return std::isnan(x) || std::isnan(y) ? NAN : std::min(x, y); };
  return pack2f<T>(m(lo_float<T>(a), lo_float<T>(b)), m(hi_float<T>(a), hi_float<T>(b)));
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
