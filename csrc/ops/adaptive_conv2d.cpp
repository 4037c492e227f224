// Operator schemas (one TORCH_LIBRARY block) and the shared argument checks.
// Device kernels are registered beside their code with TORCH_LIBRARY_IMPL.
#include "adaptive_conv2d.h"

#include <ATen/ATen.h>
#include <c10/util/safe_numerics.h>
#include <torch/library.h>

namespace adaptive_conv_ext {

namespace {
void check_pair(at::IntArrayRef v, const char* name, int64_t min_value) {
  TORCH_CHECK(v.size() == 2, "adaptive_conv2d: ", name, " must have 2 elements, got ", v.size());
  TORCH_CHECK(v[0] >= min_value && v[1] >= min_value, "adaptive_conv2d: ", name,
              " must be >= ", min_value, ", got ", v);
}

// Output extent along one axis, in int64 with overflow checks: a huge padding or
// dilation must be a clear error, never a wrapped size.
int64_t out_extent(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
  int64_t two_p = 0, padded = 0, span = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(p, int64_t{2}, &two_p) &&
                        !c10::add_overflows(size, two_p, &padded) &&
                        !c10::mul_overflows(d, k - 1, &span),
                    "adaptive_conv2d: the padded input ", axis, " (", size, " + 2*", p,
                    ") or the dilated kernel (dilation ", d, ", kernel ", k,
                    ") does not fit in int64");
  TORCH_CHECK_VALUE(padded - span - 1 >= 0, "adaptive_conv2d: kernel ", axis,
                    " with dilation (", span + 1, ") is larger than the padded input ", axis,
                    " (", padded, ")");
  return (padded - span - 1) / s + 1;
}
}  // namespace

AdaptiveConvShape check_and_make_shape(const at::Tensor& input,
                                       const at::Tensor& weight,
                                       const std::optional<at::Tensor>& kernel_bias,
                                       const std::optional<at::Tensor>& bias,
                                       at::IntArrayRef stride, at::IntArrayRef padding,
                                       at::IntArrayRef dilation, int64_t groups) {
  TORCH_CHECK(input.dim() == 4, "adaptive_conv2d: input must be 4-D (N, C, H, W), got ",
              input.dim(), "-D");
  TORCH_CHECK(weight.dim() == 6,
              "adaptive_conv2d: weight must be 6-D (O, C/groups, kH, kW, kH, kW), got ",
              weight.dim(), "-D");
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check_pair(dilation, "dilation", 1);
  TORCH_CHECK(groups >= 1, "adaptive_conv2d: groups must be >= 1, got ", groups);
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(),
              "adaptive_conv2d: input and weight dtypes differ");
  TORCH_CHECK(input.device() == weight.device(), "adaptive_conv2d: input and weight devices differ");

  AdaptiveConvShape s{};
  s.N = input.size(0);
  s.C = input.size(1);
  s.H = input.size(2);
  s.W = input.size(3);
  s.O = weight.size(0);
  s.groups = groups;
  s.kH = weight.size(2);
  s.kW = weight.size(3);
  TORCH_CHECK(weight.size(4) == s.kH && weight.size(5) == s.kW,
              "adaptive_conv2d: weight dims 4 and 5 must repeat the kernel size (", s.kH, ", ",
              s.kW, "), got ", weight.sizes());
  TORCH_CHECK(s.C % groups == 0 && s.O % groups == 0,
              "adaptive_conv2d: groups must divide input and output channels");
  TORCH_CHECK(weight.size(1) * groups == s.C, "adaptive_conv2d: weight.size(1) * groups (",
              weight.size(1) * groups, ") must equal input channels (", s.C, ")");
  s.sH = stride[0];
  s.sW = stride[1];
  s.pH = padding[0];
  s.pW = padding[1];
  s.dH = dilation[0];
  s.dW = dilation[1];
  TORCH_CHECK_VALUE(s.H > 0 && s.W > 0,
                    "adaptive_conv2d: input height and width must be non-zero, got (", s.H, ", ",
                    s.W, ")");
  s.Ho = out_extent(s.H, s.kH, s.sH, s.pH, s.dH, "height");
  s.Wo = out_extent(s.W, s.kW, s.sW, s.pW, s.dW, "width");
  int64_t out_numel = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(s.N * s.O, s.Ho, &out_numel) &&
                        !c10::mul_overflows(out_numel, s.Wo, &out_numel),
                    "adaptive_conv2d: the output (", s.N, ", ", s.O, ", ", s.Ho, ", ", s.Wo,
                    ") has more than 2**63 - 1 elements");
  if (kernel_bias.has_value()) {
    const auto& kb = *kernel_bias;
    TORCH_CHECK(kb.dim() == 4 && kb.size(0) == s.O && kb.size(1) == s.C / groups &&
                    kb.size(2) == s.kH && kb.size(3) == s.kW,
                "adaptive_conv2d: kernel_bias must have shape (O, C/groups, kH, kW), got ",
                kb.sizes());
    TORCH_CHECK(kb.scalar_type() == input.scalar_type() && kb.device() == input.device(),
                "adaptive_conv2d: kernel_bias dtype/device must match input");
  }
  if (bias.has_value()) {
    const auto& b = *bias;
    TORCH_CHECK(b.dim() == 1 && b.size(0) == s.O, "adaptive_conv2d: bias must have shape (O,), got ",
                b.sizes());
    TORCH_CHECK(b.scalar_type() == input.scalar_type() && b.device() == input.device(),
                "adaptive_conv2d: bias dtype/device must match input");
  }
  return s;
}

}  // namespace adaptive_conv_ext

// The two operators every device implements. Backward returns the gradients of
// input, weight and kernel_bias; the bias gradient (a plain sum of grad_output)
// is taken in Python. output_mask = [input, weight/kernel_bias]: a masked-off
// gradient comes back as an empty tensor and is not computed.
TORCH_LIBRARY(adaptive_conv_ext, m) {
  m.def(
      "adaptive_conv2d_forward(Tensor input, Tensor weight, Tensor? kernel_bias, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def(
      "adaptive_conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, "
      "Tensor? kernel_bias, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "bool[2] output_mask) -> (Tensor, Tensor, Tensor)");
}
