// llvm-mca input: one step k of the micro-GEMM as micro_gemm<MR = 3, NR> does it
// (NR pixel-vector loads, MR weight broadcasts, MR x NR multiply-adds); NR and the
// broadcast source as the kernel picks them for this instruction set.
#include "ops/cpu/simd/vec.h"
namespace s = adaptive_conv_ext::simd;
using V = s::Vec<float>;
constexpr int MR = 3, NR = (s::kVecRegs == 32) ? 4 : 2;
void kstep(const float* q, const V* qv, const float* B, V (&acc)[MR][NR], long n) {
  V c[MR][NR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) for (int j = 0; j < NR; ++j) c[r][j] = acc[r][j];
  for (long k = 0; k < n; ++k) {
    asm volatile("# LLVM-MCA-BEGIN micro_gemm_kstep");
    V b[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) b[j] = V::loadu(B + k * 64 + j * V::size());
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const V a = s::kBroadcastIsLoad ? V(q[r * 9 + k]) : qv[r * 9 + k];
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) c[r][j] = s::fmadd(a, b[j], c[r][j]);
    }
    asm volatile("# LLVM-MCA-END micro_gemm_kstep");
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) for (int j = 0; j < NR; ++j) acc[r][j] = c[r][j];
}
