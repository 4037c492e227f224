// CPU models of shfl.sync over the full warp: .bfly.b32 (lane l receives lane (l ^ mask)'s
// value) and .idx.b32 (lane l receives lane src_l's value, src_l chosen per lane).
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

inline uint32_t shfl_idx(uint32_t v, int src) {
  const uint64_t mine = v;
  uint32_t out = 0;
  ::emu::warp_exchange(&mine, 1, [&](const uint64_t (*slot)[16]) { out = static_cast<uint32_t>(slot[src & 31][0]); });
  return out;
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
