// PTX instruction wrappers of the tensor-core kernels, one function per instruction:
//   mma_m16n8k16<T>  mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32
//   ldmatrix_x4      ldmatrix.sync.aligned.m8n8.x4.shared.b16
//   ldmatrix_x4_trans  ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 (the backward's transposes)
//   cp_async<B>      cp.async.ca.shared.global (B = 4, 8 or 16 bytes, zero-fill), commit, wait
//   tanh2<T>         tanh.approx.{f16x2,bf16x2} (bf16x2 needs sm_90: two tanh.approx.f32 before)
//   tanh_f32         tanh.approx.f32
//   shfl_xor         shfl.sync.bfly.b32 over the full warp
//   shfl_idx         shfl.sync.idx.b32 over the full warp (source lane per lane)
//   hmul2<T>         mul.rn.f16x2 / fma.rn.bf16x2 with -0 (bf16x2 mul needs sm_90; the fma is sm_80)
// Each needs a minimum architecture (the mma and cp.async sm_80, ldmatrix and tanh.approx
// sm_75, the f16x2 arithmetic sm_53, min.NaN and the bf16x2 arithmetic sm_80); compiled for
// an older one, the wrapper traps.
//   hfma2<T>         fma.rn.{f16x2,bf16x2}
//   hmin2_nan<T>     min.NaN.{f16x2,bf16x2} (a NaN operand gives NaN)
// Registers hold two 16-bit values, the lower column in the low half. Fragment layouts,
// with lane = 0..31, g = lane / 4, t = lane % 4 (PTX ISA, "Matrix Fragments for
// mma.m16n8k16 with floating point type"):
//   A (16x16, row major): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   B (16x8,  K x N):     b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   C, D (16x8, fp32):    c0, c1 = C[g][2t, 2t+1]; c2, c3 = C[g+8][2t, 2t+1]
//   ldmatrix .x4: lanes 8i..8i+7 give the row addresses (16 bytes each) of 8x8 matrix i;
//                 register i of every lane receives row g, columns 2t, 2t+1 of matrix i;
//                 .trans: rows 2t, 2t+1 of column g of matrix i instead.
// Under the CPU emulation (ADAPTIVE_CONV_EMULATION, testing/emu_runtime.h) every function
// is the warp-wide CPU model in testing/ptx/ (behind testing/ptx/emulation.h), which follows
// the same layouts and is unit-tested against a naive matrix product (testing/test_ptx.cpp).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

// Two 16-bit values <-> one 32-bit register (lo = lower column / lower address).
template <typename T>
__device__ __forceinline__ uint16_t bits16(T v) {
  uint16_t b;
  std::memcpy(&b, &v, 2);
  return b;
}
template <typename T>
__device__ __forceinline__ T from_bits16(uint16_t b) {
  T v;
  std::memcpy(static_cast<void*>(&v), &b, 2);
  return v;
}
template <typename T>
__device__ __forceinline__ uint32_t pack2(T lo, T hi) {
  return static_cast<uint32_t>(bits16(lo)) | (static_cast<uint32_t>(bits16(hi)) << 16);
}
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T>
__device__ __forceinline__ uint32_t pack2f(float lo, float hi) {
  return pack2(from_float<T>(lo), from_float<T>(hi));
}
template <typename T>
__device__ __forceinline__ float lo_float(uint32_t r) {
  return to_float(from_bits16<T>(static_cast<uint16_t>(r & 0xffffu)));
}
template <typename T>
__device__ __forceinline__ float hi_float(uint32_t r) {
  return to_float(from_bits16<T>(static_cast<uint16_t>(r >> 16)));
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext

// The wrappers. The CPU emulation defines the same functions as warp-wide CPU models
// (testing/ptx/emulation.h, which it includes before any kernel); this header then
// declares none, and includes nothing of testing/.
#if defined(ADAPTIVE_CONV_EMULATION)
#if !defined(ADAPTIVE_CONV_PTX_MODELS)
#error "the emulation build includes testing/ptx/emulation.h (the instruction models) before the kernels"
#endif
#else

// An instruction the target architecture lacks: the kernel traps (the launch fails with an
// error) instead of computing garbage, as CUTLASS's CUTE_INVALID_CONTROL_PATH does. The
// planner never picks these kernels below sm_80 (DeviceLimits::arch); nvcc's host pass also
// compiles these branches, where device code never runs.
#define ADAPTIVE_CONV_PTX_UNSUPPORTED() __trap()

namespace adaptive_conv_ext {
namespace cuda {
namespace ptx {

// d += A * B (one m16n8k16 tile, fp32 accumulators).
template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_m16n8k16<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                     uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}
template <>
__device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                            uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}

// Four 8x8 b16 matrices from shared memory; row is this lane's row address (16-byte aligned).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}

// The same four matrices, each transposed: register i of lane (g, t) = M_i[2t][g], M_i[2t+1][g].
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}

// Asynchronous global -> shared copy of kBytes; the destination is zero-filled when !valid.
template <int kBytes>
__device__ __forceinline__ void cp_async(void* smem, const void* gmem, bool valid) {
  static_assert(kBytes == 4 || kBytes == 8 || kBytes == 16, "cp.async copies 4, 8 or 16 bytes");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? kBytes : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(addr), "l"(gmem), "n"(kBytes),
               "r"(src_bytes));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;");
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;" ::: "memory");
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
}

// tanh of both 16-bit halves of r.
template <typename T>
__device__ __forceinline__ uint32_t tanh2(uint32_t r);
template <>
__device__ __forceinline__ uint32_t tanh2<__half>(uint32_t r) {
  uint32_t y = r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  asm("tanh.approx.f16x2 %0, %1;" : "=r"(y) : "r"(r));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}
template <>
__device__ __forceinline__ uint32_t tanh2<__nv_bfloat16>(uint32_t r) {
  uint32_t y = r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm("tanh.approx.bf16x2 %0, %1;" : "=r"(y) : "r"(r));
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  float lo = lo_float<__nv_bfloat16>(r), hi = hi_float<__nv_bfloat16>(r);
  asm("tanh.approx.f32 %0, %0;" : "+f"(lo));
  asm("tanh.approx.f32 %0, %0;" : "+f"(hi));
  y = pack2f<__nv_bfloat16>(lo, hi);
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}

__device__ __forceinline__ float tanh_f32(float x) {
  float y = x;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 750
  asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}

// Both 16-bit halves of a times those of b, each rounded to nearest even.
template <typename T>
__device__ __forceinline__ uint32_t hmul2(uint32_t a, uint32_t b);
template <>
__device__ __forceinline__ uint32_t hmul2<__half>(uint32_t a, uint32_t b) {
  uint32_t y = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 530
  asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(y) : "r"(a), "r"(b));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}
template <>
__device__ __forceinline__ uint32_t hmul2<__nv_bfloat16>(uint32_t a, uint32_t b) {
  uint32_t y = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(y) : "r"(a), "r"(b), "r"(0x80008000u));  // + (-0): a * b exactly rounded
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}

// a * b + c on both 16-bit halves, one rounding to nearest even.
template <typename T>
__device__ __forceinline__ uint32_t hfma2(uint32_t a, uint32_t b, uint32_t c);
template <>
__device__ __forceinline__ uint32_t hfma2<__half>(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t y = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 530
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(y) : "r"(a), "r"(b), "r"(c));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}
template <>
__device__ __forceinline__ uint32_t hfma2<__nv_bfloat16>(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t y = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(y) : "r"(a), "r"(b), "r"(c));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}

// min of both 16-bit halves; NaN when either operand is NaN.
template <typename T>
__device__ __forceinline__ uint32_t hmin2_nan(uint32_t a, uint32_t b);
template <>
__device__ __forceinline__ uint32_t hmin2_nan<__half>(uint32_t a, uint32_t b) {
  uint32_t y = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("min.NaN.f16x2 %0, %1, %2;" : "=r"(y) : "r"(a), "r"(b));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}
template <>
__device__ __forceinline__ uint32_t hmin2_nan<__nv_bfloat16>(uint32_t a, uint32_t b) {
  uint32_t y = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("min.NaN.bf16x2 %0, %1, %2;" : "=r"(y) : "r"(a), "r"(b));
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
#endif
  return y;
}

__device__ __forceinline__ float shfl_xor(float v, int mask) {
#if defined(__CUDA_ARCH__)
  return __shfl_xor_sync(0xffffffffu, v, mask);
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
  return v;  // not reached
#endif
}
__device__ __forceinline__ uint32_t shfl_idx(uint32_t v, int src) {
#if defined(__CUDA_ARCH__)
  return __shfl_sync(0xffffffffu, v, src);
#else
  ADAPTIVE_CONV_PTX_UNSUPPORTED();
  return v;  // not reached
#endif
}

}  // namespace ptx
}  // namespace cuda
}  // namespace adaptive_conv_ext

#endif  // ADAPTIVE_CONV_EMULATION
