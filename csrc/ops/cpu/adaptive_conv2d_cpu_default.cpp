// Portable build of the CPU kernels (simd/vec.h by vector extensions: SSE2 on x86-64, NEON on AArch64).
#define CPU_CAPABILITY DEFAULT
#include "adaptive_conv2d_cpu_kernel_impl.h"
