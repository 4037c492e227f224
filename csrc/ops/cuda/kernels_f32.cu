// adaptive_conv2d CUDA: the launchers and kernels for float (kernels/README.md describes them;
// one dtype per file so that builds run in parallel).
#include "kernels/launchers.cuh"

namespace adaptive_conv_ext {
namespace cuda {

ADAPTIVE_CONV_INSTANTIATE(float)

}  // namespace cuda
}  // namespace adaptive_conv_ext
