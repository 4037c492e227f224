// CPU model of mul.rn.f16x2 / fma.rn.bf16x2 with a -0 addend (ptx::hmul2): each half is the
// product of the two halves, rounded to nearest even. The float product of two 16-bit values
// is exact (at most 22 significant bits), so one rounding to the 16-bit type is the result.
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

template <typename T>
uint32_t hmul2(uint32_t a, uint32_t b) {
  return pack2f<T>(lo_float<T>(a) * lo_float<T>(b), hi_float<T>(a) * hi_float<T>(b));
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
