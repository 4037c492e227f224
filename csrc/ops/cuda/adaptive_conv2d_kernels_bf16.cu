// adaptive_conv2d CUDA: __nv_bfloat16 instantiation of the launchers (kernels in
// adaptive_conv2d_kernels_impl.cuh; one dtype per file so that builds run in parallel).
#include "adaptive_conv2d_kernels_impl.cuh"

namespace adaptive_conv_ext {
namespace cuda {

template cudaError_t launch_forward<__nv_bfloat16, int32_t>(const AdaptiveConvShape&, const ForwardPlan&,
                                                    const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, __nv_bfloat16*, cudaStream_t);
template cudaError_t launch_forward<__nv_bfloat16, int64_t>(const AdaptiveConvShape&, const ForwardPlan&,
                                                    const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*,
                                                    const __nv_bfloat16*, __nv_bfloat16*, cudaStream_t);
template cudaError_t launch_backward<__nv_bfloat16, int32_t>(const AdaptiveConvShape&, const BackwardPlan&,
                                                     const BackwardBuffers<__nv_bfloat16>&, cudaStream_t);
template cudaError_t launch_backward<__nv_bfloat16, int64_t>(const AdaptiveConvShape&, const BackwardPlan&,
                                                     const BackwardBuffers<__nv_bfloat16>&, cudaStream_t);

}  // namespace cuda
}  // namespace adaptive_conv_ext
