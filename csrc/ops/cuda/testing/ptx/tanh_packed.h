// CPU models of tanh.approx.f32 (tanh_f32) and tanh.approx.{f16x2,bf16x2}: each half independently (the low half is the
// lower column). The hardware approximation is not bit-exact with anything we can compute
// here, so the model is deliberately pessimistic: the exact tanh rounded to the 16-bit type,
// then moved by one unit in the last place in a direction fixed by a hash of the input
// (kept inside [-1, 1]). An assumed error bound, not a measurement of the GPU.
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

template <typename T>
uint16_t tanh_approx_model(uint16_t xb) {
  const float x = to_float(from_bits16<T>(xb));
  if (std::isnan(x)) return xb;
  uint16_t y = bits16(from_float<T>(std::tanh(x)));
  const uint16_t mag = y & 0x7fff, sign = y & 0x8000;
  const uint16_t one = bits16(from_float<T>(1.0f));
  const uint32_t h = (static_cast<uint32_t>(xb) * 2654435761u) >> 16;
  if (mag == 0) return y;
  if ((h & 1) && mag < one) return static_cast<uint16_t>(sign | (mag + 1));
  return static_cast<uint16_t>(sign | (mag - 1));
}

// tanh.approx.f32: the exact tanh moved by the documented maximum relative error (2^-11,
// PTX ISA) in a direction fixed by a hash of the input; again an assumed bound.
inline float tanh_f32(float x) {
  if (std::isnan(x)) return x;
  uint32_t xb;
  std::memcpy(&xb, &x, 4);
  const float rel = ((xb * 2654435761u) >> 31) ? 0x1p-11f : -0x1p-11f;
  return std::max(-1.f, std::min(1.f, std::tanh(x) * (1.f + rel)));
}

template <typename T>
uint32_t tanh2(uint32_t r) {
  return static_cast<uint32_t>(tanh_approx_model<T>(static_cast<uint16_t>(r & 0xffffu))) |
         (static_cast<uint32_t>(tanh_approx_model<T>(static_cast<uint16_t>(r >> 16))) << 16);
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
