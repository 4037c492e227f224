// CPU implementations of the adaptive_conv_ext operators (stable ABI): dtype handling
// and the choice of instruction set, then the fused kernels.
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

#include <array>
#include <tuple>
#include <vector>

#include "../adaptive_conv2d.h"
#include "adaptive_conv2d_cpu_kernel.h"
#include "cpu_isa.h"
#include "parallel.h"

namespace adaptive_conv_ext {

// The kernels' thread pool (parallel.h): torch's.
void cpu::parallel_for_range(int64_t begin, int64_t end, int64_t grain, void* ctx, RangeFn fn) {
  torch::stable::parallel_for(begin, end, grain, [&](int64_t b, int64_t e) { fn(ctx, b, e); });
}

namespace {

using torch::headeronly::ScalarType;

template <typename T>
void run_forward(const AdaptiveConvShape& s, const T* x, const T* w, const T* kb, const T* b, T* y) {
  switch (cpu::detected_isa()) {
#if defined(ADAPTIVE_CONV_X86_KERNELS)
    case cpu::Isa::Avx512: return cpu::AVX512::forward(s, x, w, kb, b, y);
    case cpu::Isa::Avx2: return cpu::AVX2::forward(s, x, w, kb, b, y);
#endif
    default: return cpu::DEFAULT::forward(s, x, w, kb, b, y);
  }
}

template <typename T>
void run_backward(const AdaptiveConvShape& s, const T* gy, const T* x, const T* w, const T* kb,
                  T* gx, T* gw, T* gkb) {
  switch (cpu::detected_isa()) {
#if defined(ADAPTIVE_CONV_X86_KERNELS)
    case cpu::Isa::Avx512: return cpu::AVX512::backward(s, gy, x, w, kb, gx, gw, gkb);
    case cpu::Isa::Avx2: return cpu::AVX2::backward(s, gy, x, w, kb, gx, gw, gkb);
#endif
    default: return cpu::DEFAULT::backward(s, gy, x, w, kb, gx, gw, gkb);
  }
}

// float16 and bfloat16 are computed in float32 (SPEC section 2: accumulate in float32).
ScalarType compute_type(const Tensor& input) {
  switch (input.scalar_type()) {
    case ScalarType::Double: return ScalarType::Double;
    case ScalarType::Float:
    case ScalarType::Half:
    case ScalarType::BFloat16: return ScalarType::Float;
    default:
      STD_TORCH_CHECK(false, "adaptive_conv2d (CPU): unsupported dtype ", input.scalar_type(),
                      "; use float32, float64, float16 or bfloat16");
  }
}

// Calls f(T{}) with T the C++ type of a compute type (float or double).
template <typename F>
void dispatch_compute_type(ScalarType t, F&& f) {
  if (t == ScalarType::Double) {
    f(double{});
  } else {
    f(float{});
  }
}

// The tensor as the kernels read it. Each stable op is a dispatcher call looked up by
// name (microseconds), so tensors that are already right are passed through: at batch 1
// those calls were most of the operator's time.
Tensor prepared(const Tensor& t, ScalarType dtype) {
  if (t.scalar_type() == dtype && t.is_contiguous()) return t;
  return torch::stable::contiguous(torch::stable::to(t, dtype));
}

Tensor in_type(const Tensor& t, ScalarType dtype) {
  return t.scalar_type() == dtype ? t : torch::stable::to(t, dtype);
}

std::optional<Tensor> prepared(const std::optional<Tensor>& t, ScalarType dtype) {
  return t.has_value() ? std::optional<Tensor>(prepared(*t, dtype)) : std::nullopt;
}

// A new contiguous tensor of `like`'s dtype and device. One call of the C shim's
// empty_strided, where torch::stable::new_empty is a dispatcher call looked up by name
// (about 0.5 us of the 4 us operator call at 1x1x1x1 on a 2-core AMD EPYC).
Tensor empty_contiguous(const Tensor& like, IntList sizes) {
  std::array<int64_t, 6> strides{};  // the operators' tensors have at most 6 dims
  STD_TORCH_CHECK(sizes.size() <= strides.size(), "adaptive_conv2d (CPU): too many dims");
  int64_t stride = 1;
  for (size_t d = sizes.size(); d-- > 0;) {
    strides[d] = stride;
    stride *= sizes[d] > 1 ? sizes[d] : 1;
  }
  int32_t dtype = 0, device_type = 0, device_index = 0;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_dtype(like.get(), &dtype));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(like.get(), &device_type));
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(like.get(), &device_index));
  AtenTensorHandle out = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(static_cast<int64_t>(sizes.size()), sizes.data(),
                                                      strides.data(), dtype, device_type, device_index, &out));
  return Tensor(out);
}

template <typename T>
const T* ptr_or_null(const std::optional<Tensor>& t) {
  return t.has_value() ? t->const_data_ptr<T>() : nullptr;
}

Tensor forward_cpu(const Tensor& input, const Tensor& weight, const std::optional<Tensor>& kernel_bias,
                   const std::optional<Tensor>& bias, IntList stride, IntList padding,
                   IntList dilation, int64_t groups) {
  const AdaptiveConvShape s =
      check_and_make_shape(input, weight, kernel_bias, bias, stride, padding, dilation, groups);
  const ScalarType dtype = compute_type(input);
  const Tensor x = prepared(input, dtype), w = prepared(weight, dtype);
  const std::optional<Tensor> kb = prepared(kernel_bias, dtype), b = prepared(bias, dtype);
  Tensor y = empty_contiguous(x, {s.N, s.O, s.Ho, s.Wo});
  if (y.numel() > 0) {
    dispatch_compute_type(dtype, [&](auto zero) {
      using T = decltype(zero);
      run_forward<T>(s, x.const_data_ptr<T>(), w.const_data_ptr<T>(), ptr_or_null<T>(kb),
                     ptr_or_null<T>(b), y.mutable_data_ptr<T>());
    });
  }
  return in_type(y, input.scalar_type());
}

// `deterministic` is not read: the CPU kernels always sum in a fixed order.
std::tuple<Tensor, Tensor, Tensor> backward_cpu(const Tensor& grad_output, const Tensor& input,
                                                const Tensor& weight,
                                                const std::optional<Tensor>& kernel_bias,
                                                IntList stride, IntList padding, IntList dilation,
                                                int64_t groups, std::vector<bool> output_mask,
                                                bool /*deterministic*/) {
  const AdaptiveConvShape s = check_and_make_shape(input, weight, kernel_bias, std::nullopt, stride,
                                                   padding, dilation, groups);
  check_grad_output(grad_output, input, s);
  STD_TORCH_CHECK(output_mask.size() == 2, "adaptive_conv2d_backward: output_mask must have 2 elements");
  const bool need_input = output_mask[0], need_weight = output_mask[1];
  const ScalarType dtype = compute_type(input);
  const Tensor gy = prepared(grad_output, dtype), x = prepared(input, dtype);
  const Tensor w = prepared(weight, dtype);
  const std::optional<Tensor> kb = prepared(kernel_bias, dtype);
  auto none = [&] { return empty_contiguous(x, {0}); };  // one per output: no aliasing
  Tensor gx = need_input ? torch::stable::new_zeros(x, input.sizes()) : none();
  Tensor gw = need_weight ? empty_contiguous(x, weight.sizes()) : none();
  Tensor gkb = need_weight ? empty_contiguous(x, {s.O, s.in_per_group(), s.kH, s.kW}) : none();
  if (need_input || need_weight) {
    dispatch_compute_type(dtype, [&](auto zero) {
      using T = decltype(zero);
      run_backward<T>(s, gy.const_data_ptr<T>(), x.const_data_ptr<T>(), w.const_data_ptr<T>(),
                      ptr_or_null<T>(kb), need_input ? gx.mutable_data_ptr<T>() : nullptr,
                      need_weight ? gw.mutable_data_ptr<T>() : nullptr,
                      need_weight ? gkb.mutable_data_ptr<T>() : nullptr);
    });
  }
  const ScalarType out_type = input.scalar_type();
  return {in_type(gx, out_type), in_type(gw, out_type), in_type(gkb, out_type)};
}

}  // namespace
}  // namespace adaptive_conv_ext

STABLE_TORCH_LIBRARY_IMPL(adaptive_conv_ext, CPU, m) {
  m.impl("adaptive_conv2d_forward", TORCH_BOX(&adaptive_conv_ext::forward_cpu));
  m.impl("adaptive_conv2d_backward", TORCH_BOX(&adaptive_conv_ext::backward_cpu));
}
