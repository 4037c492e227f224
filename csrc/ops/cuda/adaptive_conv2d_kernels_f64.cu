// adaptive_conv2d CUDA: double instantiation of the launchers (kernels in
// adaptive_conv2d_kernels_impl.cuh; one dtype per file so that builds run in parallel).
#include "adaptive_conv2d_kernels_impl.cuh"

namespace adaptive_conv_ext {
namespace cuda {

template cudaError_t launch_forward<double, int32_t>(const AdaptiveConvShape&, const ForwardPlan&,
                                                    const double*, const double*, const double*,
                                                    const double*, double*, cudaStream_t);
template cudaError_t launch_forward<double, int64_t>(const AdaptiveConvShape&, const ForwardPlan&,
                                                    const double*, const double*, const double*,
                                                    const double*, double*, cudaStream_t);
template cudaError_t launch_backward<double, int32_t>(const AdaptiveConvShape&, const BackwardPlan&,
                                                     const BackwardBuffers<double>&, cudaStream_t);
template cudaError_t launch_backward<double, int64_t>(const AdaptiveConvShape&, const BackwardPlan&,
                                                     const BackwardBuffers<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace adaptive_conv_ext
