// llvm-mca input: the kernels' inner loop bodies, each between LLVM-MCA markers, built
// from the kernel's own code (adaptive_conv2d_cpu_kernel_impl.h included, k = 3: MR = 3).
#define CPU_CAPABILITY MCA
#include "ops/cpu/adaptive_conv2d_cpu_kernel_impl.h"
namespace adaptive_conv_ext::cpu::MCA {
namespace {
constexpr int MR = 3, NR = pixel_vectors<MR>(), NB = dq_columns<MR>();
using T = float;
using Vec = simd::Vec<T>;
constexpr int64_t V = Vec::size();
}  // namespace
// forward epilogue of one block: y += tanh(sigma) X for the MR x NR sigma vectors
void fwd_tanh(const Vec (&acc)[MR][NR], const T* X, Vec (&y)[NR], int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    asm volatile("# LLVM-MCA-BEGIN forward_tanh_epilogue");
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j)
        y[j] = simd::fmadd(simd::tanh(acc[r][j]), Vec::loadu(X + i * 8 + r * kTile + j * V), y[j]);
    asm volatile("# LLVM-MCA-END forward_tanh_epilogue");
  }
}
// backward dsigma epilogue of one block (as backward_sigma's body)
void bwd_dsigma(const Vec (&acc)[MR][NR], const T* X, const Vec (&G)[NR], T* dsig, T* dpatch, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    asm volatile("# LLVM-MCA-BEGIN backward_dsigma_epilogue");
    for (int r = 0; r < MR; ++r) {
      const int64_t row = r * kTile + i * 8;
      for (int j = 0; j < NR; ++j) {
        const Vec t = simd::tanh(acc[r][j]);
        T* d = dpatch + row + j * V;
        simd::fmadd(G[j], t, Vec::loadu(d)).store(d);
        const Vec gx = G[j] * Vec::loadu(X + row + j * V);
        simd::fnmadd(gx * t, t, gx).store(dsig + row + j * V);
      }
    }
    asm volatile("# LLVM-MCA-END backward_dsigma_epilogue");
  }
}
// one pixel vector of the weight gradient (as backward_dq's inner loop)
void bwd_dq(const T* ds, const T* xs, Vec (&acc)[MR][NB], int64_t n) {
  for (int64_t p = 0; p < n; p += V) {
    asm volatile("# LLVM-MCA-BEGIN backward_dq_pstep");
    Vec d[MR];
    for (int r = 0; r < MR; ++r) d[r] = Vec::loadu(ds + r * kTile + p);
    for (int j = 0; j < NB; ++j) {
      const Vec xv = Vec::loadu(xs + j * kTile + p);
      for (int r = 0; r < MR; ++r) acc[r][j] = simd::fmadd(d[r], xv, acc[r][j]);
    }
    asm volatile("# LLVM-MCA-END backward_dq_pstep");
  }
}
}  // namespace adaptive_conv_ext::cpu::MCA
