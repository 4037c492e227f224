// CPU model of mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32, warp-wide:
// every lane posts its A, B and C registers, then each lane computes the D elements it owns
// from the whole warp's registers. Element -> (lane, register, half) maps below are the
// PTX ISA fragment layouts, written from the matrix's side; test_ptx.cpp builds fragments
// from the lane's side (a0 = A[g][2t..], ...) and checks D against a naive product.
// Products of two 16-bit values are exact in fp32; the sum runs in fp32 in k order.
#pragma once

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

struct FragPos {
  int lane, reg, half;  // half: 0 = low 16 bits
};
inline FragPos mma_a_pos(int row, int col) { return {(row % 8) * 4 + (col % 8) / 2, row / 8 + 2 * (col / 8), col % 2}; }
inline FragPos mma_b_pos(int k, int n) { return {n * 4 + (k % 8) / 2, k / 8, k % 2}; }
inline FragPos mma_c_pos(int row, int n) { return {(row % 8) * 4 + n / 2, 2 * (row / 8) + n % 2, 0}; }

template <typename T>
void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  uint64_t mine[6] = {a[0], a[1], a[2], a[3], b0, b1};
  const int lane = ::emu::lane_id();
  float out[4] = {d[0], d[1], d[2], d[3]};
  ::emu::warp_exchange(mine, 6, [&](const uint64_t (*slot)[16]) {
    auto half_of = [&](uint64_t word, int half) {
      const uint32_t r = static_cast<uint32_t>(word);
      return half ? hi_float<T>(r) : lo_float<T>(r);
    };
    for (int row = 0; row < 16; ++row) {
      for (int n = 0; n < 8; ++n) {
        const FragPos c = mma_c_pos(row, n);
        if (c.lane != lane) continue;
        float acc = d[c.reg];
        for (int k = 0; k < 16; ++k) {
          const FragPos pa = mma_a_pos(row, k), pb = mma_b_pos(k, n);
          acc += half_of(slot[pa.lane][pa.reg], pa.half) * half_of(slot[pb.lane][4 + pb.reg], pb.half);
        }
        out[c.reg] = acc;
      }
    }
  });
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext
