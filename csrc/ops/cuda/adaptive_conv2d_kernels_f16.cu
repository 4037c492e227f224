// adaptive_conv2d CUDA: __half instantiation of the launchers (kernels in
// adaptive_conv2d_kernels_impl.cuh; one dtype per file so that builds run in parallel).
#include "adaptive_conv2d_kernels_impl.cuh"

namespace adaptive_conv_ext {
namespace cuda {

template cudaError_t launch_forward<__half, int32_t>(const AdaptiveConvShape&, const ForwardPlan&,
                                                    const __half*, const __half*, const __half*,
                                                    const __half*, __half*, cudaStream_t);
template cudaError_t launch_forward<__half, int64_t>(const AdaptiveConvShape&, const ForwardPlan&,
                                                    const __half*, const __half*, const __half*,
                                                    const __half*, __half*, cudaStream_t);
template cudaError_t launch_backward<__half, int32_t>(const AdaptiveConvShape&, const BackwardPlan&,
                                                     const BackwardBuffers<__half>&, cudaStream_t);
template cudaError_t launch_backward<__half, int64_t>(const AdaptiveConvShape&, const BackwardPlan&,
                                                     const BackwardBuffers<__half>&, cudaStream_t);

}  // namespace cuda
}  // namespace adaptive_conv_ext
