// Portable build of the CPU kernels (at::vec's generic Vectorized).
#define CPU_CAPABILITY DEFAULT
#include "adaptive_conv2d_cpu_kernel_impl.h"
