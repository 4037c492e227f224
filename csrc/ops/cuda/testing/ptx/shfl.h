// CPU model of shfl.sync.bfly.b32 over the full warp: lane l receives lane (l ^ mask)'s value.
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

inline float shfl_xor(float v, int mask) {
  uint64_t mine = 0;
  std::memcpy(&mine, &v, 4);
  float out = 0;
  ::emu::warp_exchange(&mine, 1, [&](const uint64_t (*slot)[16]) {
    std::memcpy(&out, &slot[::emu::lane_id() ^ mask][0], 4);
  });
  return out;
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
