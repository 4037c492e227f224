// adaptive_conv2d CUDA: double instantiation of the launchers (kernels in
// adaptive_conv2d_kernels_impl.cuh; one dtype per file so that builds run in parallel).
#include "adaptive_conv2d_kernels_impl.cuh"

namespace adaptive_conv_ext {
namespace cuda {

ADAPTIVE_CONV_INSTANTIATE(double)

}  // namespace cuda
}  // namespace adaptive_conv_ext
