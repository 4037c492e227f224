// adaptive_conv2d CUDA: __nv_bfloat16 instantiation of the launchers (kernels in
// adaptive_conv2d_kernels_impl.cuh; one dtype per file so that builds run in parallel).
#include "adaptive_conv2d_kernels_impl.cuh"

namespace adaptive_conv_ext {
namespace cuda {

ADAPTIVE_CONV_INSTANTIATE(__nv_bfloat16)

}  // namespace cuda
}  // namespace adaptive_conv_ext
