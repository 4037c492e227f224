// AVX-512 build of the CPU kernels; the build compiles this file with
// -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma.
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "adaptive_conv2d_cpu_kernel_impl.h"
