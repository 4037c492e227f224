// Shared by every CUDA kernel of adaptive_conv2d: the launch macro, register caps, and scalar
// helpers (conversions, index peeling, fma, tanh). The configurations are in configs.h.
#pragma once

#include <algorithm>
#include <climits>
#include <type_traits>

#include "../adaptive_conv2d_kernels.cuh"
#include "configs.h"

// Every launch goes through this macro so that testing/emulate_kernels.cpp can run the
// very same kernels on the CPU (one thread per CUDA thread) where no GPU is available.
#ifndef ADAPTIVE_CONV_LAUNCH
#define ADAPTIVE_CONV_LAUNCH(kernel, grid, block, smem, stream, ...) \
  kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif

namespace adaptive_conv_ext {
namespace cuda {
namespace {

constexpr int64_t kMaxGridBlocks = (int64_t(1) << 31) - 1;

// ---------------------------------------------------------------------------------------
// Register caps of the scalar kernels: the second __launch_bounds__ argument (min. resident
// blocks of kThreads per SM) caps registers at 65536 / (256 n): n = 4 -> 64, 3 -> 80,
// 2 -> 128, 1 -> 255. Without it ptxas picked caps of its own and spilled in 13 kernels.
// Each value is the most blocks per SM (occupancy) at which ptxas (nvcc 13.0) spills
// nothing for that architecture (benchmarks/sass.py asserts 0 spill bytes); 4 is also all
// the planner's default 48 KB of shared memory per block lets an SM hold.
enum class ScalarKernel { kForward, kGradInput, kGradWeight };
#if defined(__CUDA_ARCH__)
constexpr int kCudaArch = __CUDA_ARCH__;
#else
constexpr int kCudaArch = 0;  // host pass / CPU emulation: launch bounds are not used there
#endif
constexpr int scalar_min_blocks(ScalarKernel kind, int kh) {
  const bool sm90 = kCudaArch >= 900;  // sm_80 needs a few more registers in some kernels
  switch (kind) {
    case ScalarKernel::kForward:  // generic, 3x3, 5x5, 7x7 (sm_90): 64, 128, 128, 80 registers
      return kh == 0 ? (sm90 ? 4 : 3) : kh == 7 ? (sm90 ? 3 : 2) : 2;
    case ScalarKernel::kGradInput:  // 7x7 fits 128 registers only on sm_90; 5x5 nowhere
      return kh == 0 ? 4 : kh == 3 ? 3 : kh == 5 ? 1 : (sm90 ? 2 : 1);
    case ScalarKernel::kGradWeight:  // 5x5 and 7x7 (25 and 28 dQ columns per thread) need > 128
      return kh == 0 ? 3 : kh == 3 ? (sm90 ? 3 : 2) : 1;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------
// Scalar helpers.
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
struct FromAcc;
template <>
struct FromAcc<float> {
  static __device__ __forceinline__ float cvt(float v) { return v; }
};
template <>
struct FromAcc<double> {
  static __device__ __forceinline__ double cvt(double v) { return v; }
};
template <>
struct FromAcc<__half> {
  static __device__ __forceinline__ __half cvt(float v) { return __float2half_rn(v); }
};
template <>
struct FromAcc<__nv_bfloat16> {
  static __device__ __forceinline__ __nv_bfloat16 cvt(float v) { return __float2bfloat16_rn(v); }
};

// Peels the fastest-varying coordinate off a flat index r >= 0 (d > 0): 32-bit division
// while r fits, else 64-by-32-bit long division inline. The compiler's 64-bit division is a
// called subroutine, and the call alone made ptxas spill registers in the whole kernel.
__device__ __forceinline__ int peel(long long& r, int d) {
  const unsigned ud = static_cast<unsigned>(d);
  if (r <= 0x7fffffffLL) {
    const unsigned u = static_cast<unsigned>(r);
    const unsigned qq = u / ud;
    r = qq;
    return static_cast<int>(u - qq * ud);
  }
  const unsigned long long u = static_cast<unsigned long long>(r);
  const unsigned hi = static_cast<unsigned>(u >> 32), lo = static_cast<unsigned>(u);
  const unsigned qhi = hi / ud;
  unsigned rem = hi - qhi * ud, qlo = 0;
  for (int b = 31; b >= 0; --b) {  // rem < d < 2^31: (rem << 1) | 1 fits in 32 bits
    rem = (rem << 1) | ((lo >> b) & 1u);
    qlo <<= 1;
    if (rem >= ud) {
      rem -= ud;
      qlo |= 1u;
    }
  }
  r = static_cast<long long>((static_cast<unsigned long long>(qhi) << 32) | qlo);
  return static_cast<int>(rem);
}

// A forward work item: output-channel tile fastest, then tile column, tile row, group, image.
// Division by a launch constant d as one multiply-high: r / d == div_by_magic(r, div_magic(d))
// for 0 <= r < 2^31 / d (with m = ceil(2^31 / d) = (2^31 + e) / d, e < d, the error term
// r e / (d 2^31) stays below 1 / d). A runtime 32-bit division is ~15 SASS instructions.
// (div_magic, host and device: configs.h)
__device__ __forceinline__ int div_by_magic(int r, unsigned m) {
#if defined(__CUDA_ARCH__)
  return static_cast<int>(__umulhi(2u * static_cast<unsigned>(r), m));
#else
  return static_cast<int>((2ull * static_cast<unsigned>(r) * m) >> 32);
#endif
}

struct FwdItem {
  int ot, tx, ty, gi, n;
};
__device__ __forceinline__ FwdItem fwd_item(long long item, const FwdCfg& cfg, const Geom& g) {
  FwdItem it;
  it.ot = peel(item, cfg.n_ot);
  it.tx = peel(item, cfg.tiles_w);
  it.ty = peel(item, cfg.tiles_h);
  it.gi = peel(item, g.G);
  it.n = static_cast<int>(item);  // < N after peeling
  return it;
}

template <typename T>
__device__ __forceinline__ T ldg(const T* p) {
  return __ldg(p);
}

__device__ __forceinline__ float fma_acc(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_acc(double a, double b, double c) { return __fma_rn(a, b, c); }

// Exact tanh for float32/float64 (the 1e-6 / 1e-12 tolerances need it). The 16-bit
// types may use the MUFU approximation (max rel. error ~2^-11, inside their 5e-3/2e-2).
template <bool kFast>
__device__ __forceinline__ float tanh_acc(float x) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 750)
  if (kFast) {
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
  }
#endif
  return tanhf(x);
}
template <bool kFast>
__device__ __forceinline__ double tanh_acc(double x) {
  return tanh(x);
}

template <typename scalar_t>
struct FastTanh {
  static constexpr bool value = false;
};
template <>
struct FastTanh<__half> {
  static constexpr bool value = true;
};
template <>
struct FastTanh<__nv_bfloat16> {
  static constexpr bool value = true;
};

// 16-byte vector of accumulators, for broadcast loads of Q rows and patch rows from
// shared memory (rows are padded to a multiple of the vector length, Tp).
template <typename A, int N>
struct alignas(16) VecN {
  A v[N];
};
template <typename A>
struct VecOf {
  static constexpr int n = 16 / sizeof(A);
  using type = VecN<A, n>;
};

// What the scalar kernels (forward.cuh, backward_input.cuh, backward_weight.cuh) know at
// compile time: accumulator and vector types, the tanh, and the taps T = KH * KW, fixed
// for a static kernel size (KH > 0) and read from Geom at run time otherwise (KH = 0).
template <typename scalar_t, int KH, int KW>
struct ScalarKernelTraits {
  using acc_t = typename AccType<scalar_t>::type;
  using V = VecOf<acc_t>;
  static constexpr bool kStatic = KH > 0;
  static constexpr int kT = kStatic ? KH * KW : 1;
  static constexpr int kTp = kStatic ? (kT + V::n - 1) / V::n * V::n : 1;  // rows padded to vectors
  static constexpr bool kFast = FastTanh<scalar_t>::value;
  // Unrolling the kernel-row loop too would make 7x7 bodies of ~5000 FMAs: slow to
  // compile and register-hungry. Rows stay a loop there; taps within a row are unrolled.
  static constexpr bool kFullT = kT <= 25;
};

}  // namespace
}  // namespace cuda
}  // namespace adaptive_conv_ext
