// CPU model of ldmatrix.sync.aligned.m8n8.x4{,.trans}.shared.b16, warp-wide: lanes 8i..8i+7 post the
// row addresses of 8x8 matrix i; register i of lane (g = lane / 4, t = lane % 4) receives
// elements 2t and 2t+1 of row g of matrix i (the lower column in the low half).
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

// kTrans: register i of lane (g, t) receives rows 2t and 2t+1 of column g (.trans).
template <bool kTrans>
inline void ldmatrix_x4_model(uint32_t (&r)[4], const void* row) {
  const uint64_t mine = reinterpret_cast<uintptr_t>(row);
  const int lane = ::emu::lane_id();
  if (mine % 16 != 0) {
    std::fprintf(stderr, "ldmatrix: row address of lane %d is not 16-byte aligned\n", lane);
    std::abort();
  }
  ::emu::warp_exchange(&mine, 1, [&](const uint64_t (*slot)[16]) {
    for (int i = 0; i < 4; ++i) {
      auto at = [&](int rr, int cc) {
        return static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(static_cast<uintptr_t>(slot[8 * i + rr][0]))[cc]);
      };
      const int g = lane / 4, t = lane % 4;
      r[i] = kTrans ? at(2 * t, g) | (at(2 * t + 1, g) << 16) : at(g, 2 * t) | (at(g, 2 * t + 1) << 16);
    }
  });
}
inline void ldmatrix_x4(uint32_t (&r)[4], const void* row) { ldmatrix_x4_model<false>(r, row); }
inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) { ldmatrix_x4_model<true>(r, row); }

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
