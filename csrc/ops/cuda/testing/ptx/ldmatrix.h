// CPU model of ldmatrix.sync.aligned.m8n8.x4.shared.b16, warp-wide: lanes 8i..8i+7 post the
// row addresses of 8x8 matrix i; register i of lane (g = lane / 4, t = lane % 4) receives
// elements 2t and 2t+1 of row g of matrix i (the lower column in the low half).
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  const uint64_t mine = reinterpret_cast<uintptr_t>(row);
  const int lane = ::emu::lane_id();
  if (mine % 16 != 0) {
    std::fprintf(stderr, "ldmatrix: row address of lane %d is not 16-byte aligned\n", lane);
    std::abort();
  }
  ::emu::warp_exchange(&mine, 1, [&](const uint64_t (*slot)[16]) {
    for (int i = 0; i < 4; ++i) {
      const auto* src = reinterpret_cast<const uint16_t*>(static_cast<uintptr_t>(slot[8 * i + lane / 4][0]));
      r[i] = static_cast<uint32_t>(src[2 * (lane % 4)]) | (static_cast<uint32_t>(src[2 * (lane % 4) + 1]) << 16);
    }
  });
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
