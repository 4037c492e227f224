// AVX2+FMA build of the CPU kernels; the build compiles this file with -mavx2 -mfma.
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "adaptive_conv2d_cpu_kernel_impl.h"
