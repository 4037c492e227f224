// The checks every native backend runs before touching memory, on the LibTorch
// stable ABI (torch::stable::Tensor): the CPU and the CUDA libraries both compile
// adaptive_conv2d.cpp, so the geometry rules and the output-size formula live
// there only.
#pragma once
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/Exception.h>
#include <torch/headeronly/util/HeaderOnlyArrayRef.h>

#include <cstdint>
#include <optional>
#include <string>

#include "adaptive_conv2d_shape.h"

namespace adaptive_conv_ext {

using torch::stable::Tensor;
using IntList = torch::headeronly::IntHeaderOnlyArrayRef;

// Validates what a kernel relies on (the Python layer has already produced
// friendlier messages for users; these guard direct dispatcher callers).
AdaptiveConvShape check_and_make_shape(const Tensor& input, const Tensor& weight,
                                       const std::optional<Tensor>& kernel_bias,
                                       const std::optional<Tensor>& bias, IntList stride,
                                       IntList padding, IntList dilation, int64_t groups);

// grad_output of the backward op: (N, O, Ho, Wo) of shape s, input's dtype.
void check_grad_output(const Tensor& grad_output, const Tensor& input, const AdaptiveConvShape& s);

// "(2, 3, 4)": sizes for error messages.
std::string sizes_str(IntList sizes);

}  // namespace adaptive_conv_ext
