// The shared argument checks and the output-size formula (stable ABI only: the CPU
// library and the CUDA library each compile this file). The operator schemas are
// in schemas.cpp, part of the CPU library only.
#include "adaptive_conv2d.h"

#include <sstream>
#include <stdexcept>

namespace adaptive_conv_ext {

std::string sizes_str(IntList sizes) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < sizes.size(); ++i) out << (i ? ", " : "") << sizes[i];
  out << (sizes.size() == 1 ? ",)" : ")");
  return out.str();
}

namespace {

// Bad values (as opposed to bad shapes or types): std::invalid_argument, which torch's
// Python bindings raise as ValueError, like the Python layer's own checks.
#define ADAPTIVE_CONV_CHECK_VALUE(cond, ...)                                             \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      throw std::invalid_argument(                                                       \
          torch::headeronly::detail::stdTorchCheckMsgImpl(#cond, __VA_ARGS__));          \
    }                                                                                    \
  } while (0)

void check_pair(IntList v, const char* name, int64_t min_value) {
  STD_TORCH_CHECK(v.size() == 2, "adaptive_conv2d: ", name, " must have 2 elements, got ", v.size());
  STD_TORCH_CHECK(v[0] >= min_value && v[1] >= min_value, "adaptive_conv2d: ", name,
                  " must be >= ", min_value, ", got ", sizes_str(v));
}

// Output extent along one axis, in int64 with overflow checks: a huge padding or
// dilation must be a clear error, never a wrapped size.
int64_t out_extent(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d, const char* axis) {
  int64_t two_p = 0, padded = 0, span = 0;
  ADAPTIVE_CONV_CHECK_VALUE(!__builtin_mul_overflow(p, int64_t{2}, &two_p) &&
                                !__builtin_add_overflow(size, two_p, &padded) &&
                                !__builtin_mul_overflow(d, k - 1, &span),
                            "adaptive_conv2d: the padded input ", axis, " (", size, " + 2*", p,
                            ") or the dilated kernel (dilation ", d, ", kernel ", k,
                            ") does not fit in int64");
  ADAPTIVE_CONV_CHECK_VALUE(padded - span - 1 >= 0, "adaptive_conv2d: kernel ", axis,
                            " with dilation (", span + 1, ") is larger than the padded input ",
                            axis, " (", padded, ")");
  return (padded - span - 1) / s + 1;
}

void check_like_input(const Tensor& t, const Tensor& input, const char* name) {
  STD_TORCH_CHECK(t.scalar_type() == input.scalar_type(), "adaptive_conv2d: ", name, " dtype ",
                  t.scalar_type(), " differs from input dtype ", input.scalar_type());
  STD_TORCH_CHECK(t.device() == input.device(), "adaptive_conv2d: ", name,
                  " is on a different device than input");
}

}  // namespace

AdaptiveConvShape check_and_make_shape(const Tensor& input, const Tensor& weight,
                                       const std::optional<Tensor>& kernel_bias,
                                       const std::optional<Tensor>& bias, IntList stride,
                                       IntList padding, IntList dilation, int64_t groups) {
  STD_TORCH_CHECK(input.dim() == 4, "adaptive_conv2d: input must be 4-D (N, C, H, W), got ",
                  input.dim(), "-D");
  STD_TORCH_CHECK(weight.dim() == 6,
                  "adaptive_conv2d: weight must be 6-D (O, C/groups, kH, kW, kH, kW), got ",
                  weight.dim(), "-D");
  check_pair(stride, "stride", 1);
  check_pair(padding, "padding", 0);
  check_pair(dilation, "dilation", 1);
  STD_TORCH_CHECK(groups >= 1, "adaptive_conv2d: groups must be >= 1, got ", groups);
  check_like_input(weight, input, "weight");

  AdaptiveConvShape s{};
  s.N = input.size(0);
  s.C = input.size(1);
  s.H = input.size(2);
  s.W = input.size(3);
  s.O = weight.size(0);
  s.groups = groups;
  s.kH = weight.size(2);
  s.kW = weight.size(3);
  STD_TORCH_CHECK(weight.size(4) == s.kH && weight.size(5) == s.kW,
                  "adaptive_conv2d: weight dims 4 and 5 must repeat the kernel size (", s.kH, ", ",
                  s.kW, "), got ", sizes_str(weight.sizes()));
  STD_TORCH_CHECK(s.C % groups == 0 && s.O % groups == 0,
                  "adaptive_conv2d: groups must divide input and output channels");
  STD_TORCH_CHECK(weight.size(1) * groups == s.C, "adaptive_conv2d: weight.size(1) * groups (",
                  weight.size(1) * groups, ") must equal input channels (", s.C, ")");
  s.sH = stride[0];
  s.sW = stride[1];
  s.pH = padding[0];
  s.pW = padding[1];
  s.dH = dilation[0];
  s.dW = dilation[1];
  ADAPTIVE_CONV_CHECK_VALUE(s.H > 0 && s.W > 0,
                            "adaptive_conv2d: input height and width must be non-zero, got (",
                            s.H, ", ", s.W, ")");
  s.Ho = out_extent(s.H, s.kH, s.sH, s.pH, s.dH, "height");
  s.Wo = out_extent(s.W, s.kW, s.sW, s.pW, s.dW, "width");
  int64_t out_numel = 0;
  ADAPTIVE_CONV_CHECK_VALUE(!__builtin_mul_overflow(s.N * s.O, s.Ho, &out_numel) &&
                                !__builtin_mul_overflow(out_numel, s.Wo, &out_numel),
                            "adaptive_conv2d: the output (", s.N, ", ", s.O, ", ", s.Ho, ", ",
                            s.Wo, ") has more than 2**63 - 1 elements");
  if (kernel_bias.has_value()) {
    const Tensor& kb = *kernel_bias;
    STD_TORCH_CHECK(kb.dim() == 4 && kb.size(0) == s.O && kb.size(1) == s.C / groups &&
                        kb.size(2) == s.kH && kb.size(3) == s.kW,
                    "adaptive_conv2d: kernel_bias must have shape (O, C/groups, kH, kW), got ",
                    sizes_str(kb.sizes()));
    check_like_input(kb, input, "kernel_bias");
  }
  if (bias.has_value()) {
    const Tensor& b = *bias;
    STD_TORCH_CHECK(b.dim() == 1 && b.size(0) == s.O,
                    "adaptive_conv2d: bias must have shape (O,), got ", sizes_str(b.sizes()));
    check_like_input(b, input, "bias");
  }
  return s;
}

void check_grad_output(const Tensor& grad_output, const Tensor& input, const AdaptiveConvShape& s) {
  STD_TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == s.N &&
                      grad_output.size(1) == s.O && grad_output.size(2) == s.Ho &&
                      grad_output.size(3) == s.Wo,
                  "adaptive_conv2d_backward: grad_output must have shape (", s.N, ", ", s.O, ", ",
                  s.Ho, ", ", s.Wo, "), got ", sizes_str(grad_output.sizes()));
  check_like_input(grad_output, input, "grad_output");
}

}  // namespace adaptive_conv_ext
