// Entry points of the fused CPU kernels. The implementation
// (adaptive_conv2d_cpu_kernel_impl.h) is compiled once per instruction set, each
// copy in its own namespace; adaptive_conv2d_cpu.cpp picks one at run time.
#pragma once
#include <cstdint>

#include "../adaptive_conv2d_shape.h"

#define ADAPTIVE_CONV_DECLARE_CPU_KERNELS(ISA)                                                  \
  namespace adaptive_conv_ext::cpu::ISA {                                                       \
  /* y = forward(x); every pointer is a contiguous tensor; kernel_bias, bias may be null. */    \
  void forward(const AdaptiveConvShape& s, const float* x, const float* w, const float* kb,     \
               const float* bias, float* y);                                                    \
  void forward(const AdaptiveConvShape& s, const double* x, const double* w, const double* kb,  \
               const double* bias, double* y);                                                  \
  /* gx (zero-filled by the caller) or gw+gkb may be null: that gradient is skipped. */         \
  void backward(const AdaptiveConvShape& s, const float* gy, const float* x, const float* w,    \
                const float* kb, float* gx, float* gw, float* gkb);                             \
  void backward(const AdaptiveConvShape& s, const double* gy, const double* x, const double* w, \
                const double* kb, double* gx, double* gw, double* gkb);                         \
  }

ADAPTIVE_CONV_DECLARE_CPU_KERNELS(DEFAULT)
#if defined(ADAPTIVE_CONV_X86_KERNELS)
ADAPTIVE_CONV_DECLARE_CPU_KERNELS(AVX2)
ADAPTIVE_CONV_DECLARE_CPU_KERNELS(AVX512)
#endif
