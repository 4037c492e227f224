// The operator's C++ entry points (what TORCH_LIBRARY_IMPL registers) and the
// checks every native backend runs before touching memory.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <tuple>

#include "adaptive_conv2d_shape.h"

namespace adaptive_conv_ext {

// Validates what a kernel relies on (the Python layer has already produced
// friendlier messages for users; these guard direct dispatcher callers).
AdaptiveConvShape check_and_make_shape(const at::Tensor& input,
                                       const at::Tensor& weight,
                                       const std::optional<at::Tensor>& kernel_bias,
                                       const std::optional<at::Tensor>& bias,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, int64_t groups);

}  // namespace adaptive_conv_ext
