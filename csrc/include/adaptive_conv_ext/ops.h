// Typed C++ calls of the adaptive_conv_ext operators, for C++ programs and other
// extensions: no hand-written dispatcher calls. Header-only, on the LibTorch stable
// ABI (torch::stable::Tensor, torch_call_dispatcher): works with every torch >= 2.10.
// The operators must be registered first: link (or dlopen) the adaptive_conv_ext
// library built by CMakeLists.txt, or import adaptive_conv_ext in Python.
//
//   #include <adaptive_conv_ext/ops.h>
//   torch::stable::Tensor y = adaptive_conv_ext::adaptive_conv2d_forward(
//       x, w, kernel_bias, bias, {1, 1}, {1, 1}, {1, 1}, 1);
//
// Shapes and meaning: docs/SPEC.md. Errors are std::runtime_error.
#pragma once
#include <torch/csrc/stable/c/shim.h>
#include <torch/csrc/stable/macros.h>
#include <torch/csrc/stable/stableivalue_conversions.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/HeaderOnlyArrayRef.h>

#include <array>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

namespace adaptive_conv_ext {

namespace detail {
template <size_t N>
void call_op(const char* name, std::array<StableIValue, N>& stack) {
  STABLE_TORCH_ERROR_CODE_CHECK(torch_call_dispatcher(name, "", stack.data(), TORCH_ABI_VERSION));
}

inline std::vector<int64_t> pair(std::array<int64_t, 2> v) { return {v[0], v[1]}; }
}  // namespace detail

// y = adaptive_conv2d(input, weight, kernel_bias, bias): input (N, C, H, W), weight
// (O, C/groups, kH, kW, kH, kW), kernel_bias (O, C/groups, kH, kW), bias (O,).
inline torch::stable::Tensor adaptive_conv2d_forward(
    const torch::stable::Tensor& input, const torch::stable::Tensor& weight,
    const std::optional<torch::stable::Tensor>& kernel_bias,
    const std::optional<torch::stable::Tensor>& bias, std::array<int64_t, 2> stride,
    std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, int64_t groups) {
  using torch::stable::detail::from;
  std::array<StableIValue, 8> stack{from(input), from(weight), from(kernel_bias), from(bias),
                                    from(detail::pair(stride)), from(detail::pair(padding)),
                                    from(detail::pair(dilation)), from(groups)};
  detail::call_op("adaptive_conv_ext::adaptive_conv2d_forward", stack);
  return torch::stable::detail::to<torch::stable::Tensor>(stack[0]);
}

// (grad_input, grad_weight, grad_kernel_bias); a gradient masked off by output_mask
// ({input, weight and kernel_bias}) comes back empty. deterministic: bitwise
// reproducible gradients (the CUDA kernels then avoid atomics; the CPU ones always are).
inline std::tuple<torch::stable::Tensor, torch::stable::Tensor, torch::stable::Tensor>
adaptive_conv2d_backward(const torch::stable::Tensor& grad_output, const torch::stable::Tensor& input,
                         const torch::stable::Tensor& weight,
                         const std::optional<torch::stable::Tensor>& kernel_bias,
                         std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                         std::array<int64_t, 2> dilation, int64_t groups,
                         std::array<bool, 2> output_mask = {true, true}, bool deterministic = false) {
  using torch::stable::detail::from;
  using torch::stable::detail::to;
  std::array<StableIValue, 10> stack{
      from(grad_output), from(input), from(weight), from(kernel_bias),
      from(detail::pair(stride)), from(detail::pair(padding)), from(detail::pair(dilation)),
      from(groups),
      // a bool list: HeaderOnlyArrayRef (std::vector<bool> has no contiguous bools)
      from(torch::headeronly::HeaderOnlyArrayRef<bool>(output_mask.data(), output_mask.size())),
      from(deterministic)};
  detail::call_op("adaptive_conv_ext::adaptive_conv2d_backward", stack);
  return {to<torch::stable::Tensor>(stack[0]), to<torch::stable::Tensor>(stack[1]),
          to<torch::stable::Tensor>(stack[2])};
}

}  // namespace adaptive_conv_ext
