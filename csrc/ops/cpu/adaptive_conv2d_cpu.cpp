// CPU implementations of the adaptive_conv_ext operators: dtype handling and
// the choice of instruction set, then the fused kernels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include "../adaptive_conv2d.h"
#include "adaptive_conv2d_cpu_kernel.h"

namespace adaptive_conv_ext {
namespace {

enum class Isa { Default, Avx2, Avx512 };

// at::get_cpu_capability() honours ATEN_CPU_CAPABILITY, so users can force a
// narrower instruction set exactly as they do for torch's own kernels.
Isa cpu_isa() {
#if defined(ADAPTIVE_CONV_X86_KERNELS)
  static const Isa isa = [] {
    const std::string cap = at::get_cpu_capability();
    if (cap == "AVX512") return Isa::Avx512;
    if (cap == "AVX2") return Isa::Avx2;
    return Isa::Default;
  }();
  return isa;
#else
  return Isa::Default;
#endif
}

template <typename T>
void run_forward(const AdaptiveConvShape& s, const T* x, const T* w, const T* kb, const T* b, T* y) {
  switch (cpu_isa()) {
#if defined(ADAPTIVE_CONV_X86_KERNELS)
    case Isa::Avx512: return cpu::AVX512::forward(s, x, w, kb, b, y);
    case Isa::Avx2: return cpu::AVX2::forward(s, x, w, kb, b, y);
#endif
    default: return cpu::DEFAULT::forward(s, x, w, kb, b, y);
  }
}

template <typename T>
void run_backward(const AdaptiveConvShape& s, const T* gy, const T* x, const T* w, const T* kb,
                  T* gx, T* gw, T* gkb) {
  switch (cpu_isa()) {
#if defined(ADAPTIVE_CONV_X86_KERNELS)
    case Isa::Avx512: return cpu::AVX512::backward(s, gy, x, w, kb, gx, gw, gkb);
    case Isa::Avx2: return cpu::AVX2::backward(s, gy, x, w, kb, gx, gw, gkb);
#endif
    default: return cpu::DEFAULT::backward(s, gy, x, w, kb, gx, gw, gkb);
  }
}

// float16 and bfloat16 are computed in float32 (SPEC section 2: accumulate in float32).
at::ScalarType compute_type(const at::Tensor& input) {
  TORCH_CHECK(at::isFloatingType(input.scalar_type()),
              "adaptive_conv2d: expected a floating dtype, got ", input.scalar_type());
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor prepared(const at::Tensor& t, at::ScalarType dtype) {
  return t.to(dtype).contiguous();
}

at::Tensor prepared(const std::optional<at::Tensor>& t, at::ScalarType dtype) {
  return t.has_value() ? prepared(*t, dtype) : at::Tensor();
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

at::Tensor forward_cpu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& kernel_bias,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const AdaptiveConvShape s =
      check_and_make_shape(input, weight, kernel_bias, bias, stride, padding, dilation, groups);
  const auto dtype = compute_type(input);
  const at::Tensor x = prepared(input, dtype), w = prepared(weight, dtype);
  const at::Tensor kb = prepared(kernel_bias, dtype), b = prepared(bias, dtype);
  at::Tensor y = at::empty({s.N, s.O, s.Ho, s.Wo}, x.options());
  if (y.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(dtype, "adaptive_conv2d_forward_cpu", [&] {
      run_forward<scalar_t>(s, x.const_data_ptr<scalar_t>(), w.const_data_ptr<scalar_t>(),
                            ptr_or_null<scalar_t>(kb), ptr_or_null<scalar_t>(b),
                            y.mutable_data_ptr<scalar_t>());
    });
  }
  return y.to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& kernel_bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, std::array<bool, 2> output_mask) {
  const AdaptiveConvShape s =
      check_and_make_shape(input, weight, kernel_bias, std::nullopt, stride, padding, dilation, groups);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == s.N && grad_output.size(1) == s.O &&
                  grad_output.size(2) == s.Ho && grad_output.size(3) == s.Wo,
              "adaptive_conv2d_backward: grad_output must have shape (", s.N, ", ", s.O, ", ", s.Ho,
              ", ", s.Wo, "), got ", grad_output.sizes());
  const auto dtype = compute_type(input);
  const at::Tensor gy = prepared(grad_output, dtype), x = prepared(input, dtype);
  const at::Tensor w = prepared(weight, dtype), kb = prepared(kernel_bias, dtype);
  const auto opts = x.options();
  at::Tensor gx = output_mask[0] ? at::zeros(input.sizes(), opts) : at::empty({0}, opts);
  at::Tensor gw = output_mask[1] ? at::empty(weight.sizes(), opts) : at::empty({0}, opts);
  at::Tensor gkb = output_mask[1] ? at::empty(weight.sizes().slice(0, 4), opts) : at::empty({0}, opts);
  if (output_mask[0] || output_mask[1]) {
    AT_DISPATCH_FLOATING_TYPES(dtype, "adaptive_conv2d_backward_cpu", [&] {
      run_backward<scalar_t>(s, gy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                             w.const_data_ptr<scalar_t>(), ptr_or_null<scalar_t>(kb),
                             output_mask[0] ? gx.mutable_data_ptr<scalar_t>() : nullptr,
                             output_mask[1] ? gw.mutable_data_ptr<scalar_t>() : nullptr,
                             output_mask[1] ? gkb.mutable_data_ptr<scalar_t>() : nullptr);
    });
  }
  const auto out_type = input.scalar_type();
  return {gx.to(out_type), gw.to(out_type), gkb.to(out_type)};
}

}  // namespace

TORCH_LIBRARY_IMPL(adaptive_conv_ext, CPU, m) {
  m.impl("adaptive_conv2d_forward", &forward_cpu);
  m.impl("adaptive_conv2d_backward", &backward_cpu);
}

}  // namespace adaptive_conv_ext
