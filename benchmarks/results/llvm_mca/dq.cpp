// llvm-mca input: one pixel vector of backward_dq's block (MR = 3 rows, NB columns as
// dq_columns<3>() picks them), accumulators in registers as in the kernel.
#include <algorithm>
#include "ops/cpu/simd/vec.h"
namespace s = adaptive_conv_ext::simd;
using V = s::Vec<float>;
constexpr int MR = 3, NB = std::min(9, (s::kVecRegs - MR - 2) / MR);
void dq(const float* ds, const float* xs, float* out, long n) {
  V acc[MR][NB];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 9
    for (int j = 0; j < NB; ++j) acc[r][j] = V::loadu(out + (r * 9 + j) * V::size());
  for (long p = 0; p < n; p += V::size()) {
    asm volatile("# LLVM-MCA-BEGIN backward_dq_pstep");
    V d[MR];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) d[r] = V::loadu(ds + r * 64 + p);
#pragma GCC unroll 9
    for (int j = 0; j < NB; ++j) {
      const V xv = V::loadu(xs + j * 64 + p);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][j] = s::fmadd(d[r], xv, acc[r][j]);
    }
    asm volatile("# LLVM-MCA-END backward_dq_pstep");
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 9
    for (int j = 0; j < NB; ++j) acc[r][j].store(out + (r * 9 + j) * V::size());
}
