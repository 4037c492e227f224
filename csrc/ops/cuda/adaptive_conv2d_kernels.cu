// adaptive_conv2d CUDA: the host-side planner (kernels/planner.cuh) and the float32
// instantiation of the launchers. The kernels are in kernels/ (adaptive_conv2d_kernels_impl.cuh
// lists them); the other dtypes live in adaptive_conv2d_kernels_*.cu.
#include "adaptive_conv2d_kernels_impl.cuh"
#include "kernels/planner.cuh"

namespace adaptive_conv_ext {
namespace cuda {

ADAPTIVE_CONV_INSTANTIATE(float)

}  // namespace cuda
}  // namespace adaptive_conv_ext
