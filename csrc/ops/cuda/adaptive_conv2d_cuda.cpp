// CUDA implementations of the adaptive_conv_ext operators (schemas in
// ../adaptive_conv2d.cpp). Torch-facing glue only: checks, allocation, dtype and
// index-width dispatch; the kernels are in adaptive_conv2d_kernels*.cu (torch-free).
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h): that one pulls in the
// cuBLAS/cuSPARSE/cuSOLVER headers, which a plain CUDA toolkit install may lack.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <string>
#include <tuple>

#include "../adaptive_conv2d.h"
#include "adaptive_conv2d_kernels.cuh"

namespace adaptive_conv_ext {
namespace {

template <typename T>
struct Tag {
  using type = T;
};

cuda::DType dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::DType::kFloat32;
    case at::kDouble:
      return cuda::DType::kFloat64;
    case at::kHalf:
      return cuda::DType::kFloat16;
    case at::kBFloat16:
      return cuda::DType::kBFloat16;
    default:
      TORCH_CHECK(false, "adaptive_conv2d (CUDA): unsupported dtype ", t,
                  "; use float32, float64, float16 or bfloat16");
  }
}

// Calls f(Tag<scalar_t>{}, Tag<index_t>{}) for the tensor dtype and index width.
template <typename F>
void dispatch(at::ScalarType t, bool use_int64, F&& f) {
  auto with_index = [&](auto scalar_tag) {
    if (use_int64) {
      f(scalar_tag, Tag<int64_t>{});
    } else {
      f(scalar_tag, Tag<int32_t>{});
    }
  };
  switch (t) {
    case at::kFloat:
      return with_index(Tag<float>{});
    case at::kDouble:
      return with_index(Tag<double>{});
    case at::kHalf:
      return with_index(Tag<__half>{});  // same layout as at::Half
    case at::kBFloat16:
      return with_index(Tag<__nv_bfloat16>{});  // same layout as at::BFloat16
    default:
      TORCH_CHECK(false, "adaptive_conv2d (CUDA): unsupported dtype ", t);
  }
}

template <typename T>
const T* cptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<const T*>(t.const_data_ptr()) : nullptr;
}
template <typename T>
T* mptr(const at::Tensor& t) {
  return t.defined() ? reinterpret_cast<T*>(t.mutable_data_ptr()) : nullptr;
}

void check_cuda(const at::Tensor& t, const char* name, const at::Device& device) {
  TORCH_CHECK(t.is_cuda(), "adaptive_conv2d (CUDA): ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.device() == device, "adaptive_conv2d (CUDA): ", name, " is on ", t.device(),
              " but input is on ", device);
}

void check_launch(cudaError_t e, const char* what) {
  TORCH_CHECK(e == cudaSuccess, "adaptive_conv2d (CUDA): ", what, " failed: ", cudaGetErrorString(e));
}

at::Tensor adaptive_conv2d_forward_cuda(const at::Tensor& input, const at::Tensor& weight,
                                        const std::optional<at::Tensor>& kernel_bias,
                                        const std::optional<at::Tensor>& bias,
                                        at::IntArrayRef stride, at::IntArrayRef padding,
                                        at::IntArrayRef dilation, int64_t groups) {
  const AdaptiveConvShape s =
      check_and_make_shape(input, weight, kernel_bias, bias, stride, padding, dilation, groups);
  const at::Device device = input.device();
  check_cuda(input, "input", device);
  check_cuda(weight, "weight", device);
  c10::cuda::CUDAGuard guard(device);

  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor kb = kernel_bias.has_value() ? kernel_bias->contiguous() : at::Tensor();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor y = at::empty({s.N, s.O, s.Ho, s.Wo}, x.options());  // contiguous NCHW
  if (y.numel() == 0) return y;  // N == 0 or O == 0: nothing to launch

  cuda::ForwardPlan plan;
  cuda::DeviceLimits limits;
  std::string why;
  TORCH_CHECK(cuda::query_device_limits(&limits, &why) &&
                  cuda::plan_forward(dtype_of(x.scalar_type()), s, limits, &plan, &why),
              "adaptive_conv2d (CUDA) forward: ", why);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const at::Tensor q_pack = plan.q_pack_elems > 0 ? at::empty({plan.q_pack_elems}, x.options()) : at::Tensor();
  dispatch(x.scalar_type(), plan.use_int64, [&](auto st, auto it) {
    using scalar_t = typename decltype(st)::type;
    using index_t = typename decltype(it)::type;
    check_launch(cuda::launch_forward<scalar_t, index_t>(s, plan, cptr<scalar_t>(x), cptr<scalar_t>(w),
                                                         cptr<scalar_t>(kb), cptr<scalar_t>(b),
                                                         mptr<scalar_t>(y), mptr<scalar_t>(q_pack), stream),
                 "forward kernel launch");
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> adaptive_conv2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    const std::optional<at::Tensor>& kernel_bias, at::IntArrayRef stride, at::IntArrayRef padding,
    at::IntArrayRef dilation, int64_t groups, std::array<bool, 2> output_mask) {
  const AdaptiveConvShape s = check_and_make_shape(input, weight, kernel_bias, std::nullopt, stride,
                                                   padding, dilation, groups);
  const at::Device device = input.device();
  check_cuda(input, "input", device);
  check_cuda(weight, "weight", device);
  check_cuda(grad_output, "grad_output", device);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == s.N && grad_output.size(1) == s.O &&
                  grad_output.size(2) == s.Ho && grad_output.size(3) == s.Wo,
              "adaptive_conv2d (CUDA) backward: grad_output must have shape (", s.N, ", ", s.O, ", ",
              s.Ho, ", ", s.Wo, "), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              "adaptive_conv2d (CUDA) backward: grad_output dtype ", grad_output.scalar_type(),
              " differs from input dtype ", input.scalar_type());
  c10::cuda::CUDAGuard guard(device);

  const bool need_input = output_mask[0];
  const bool need_weight = output_mask[1];  // covers weight and kernel_bias
  const at::TensorOptions opts = input.options();
  const int64_t Cg = s.C / s.groups;
  at::Tensor grad_input = at::empty({0}, opts);
  at::Tensor grad_weight = at::empty({0}, opts);
  at::Tensor grad_kernel_bias = at::empty({0}, opts);
  if (!need_input && !need_weight) return {grad_input, grad_weight, grad_kernel_bias};

  const bool empty_problem = s.N == 0 || s.C == 0 || s.O == 0;
  if (empty_problem) {  // nothing flows: zero gradients of the right shapes, no launch
    if (need_input) grad_input = at::zeros(input.sizes(), opts);
    if (need_weight) {
      grad_weight = at::zeros(weight.sizes(), opts);
      grad_kernel_bias = at::zeros({s.O, Cg, s.kH, s.kW}, opts);
    }
    return {grad_input, grad_weight, grad_kernel_bias};
  }

  const at::Tensor go = grad_output.contiguous();
  const at::Tensor x = input.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor kb = kernel_bias.has_value() ? kernel_bias->contiguous() : at::Tensor();
  const bool deterministic = at::globalContext().deterministicAlgorithms();

  cuda::BackwardPlan plan;
  cuda::DeviceLimits limits;
  std::string why;
  TORCH_CHECK(cuda::query_device_limits(&limits, &why) &&
                  cuda::plan_backward(dtype_of(x.scalar_type()), s, need_input, need_weight,
                                      deterministic, limits, &plan, &why),
              "adaptive_conv2d (CUDA) backward: ", why);

  // Accumulators: grad_input in the accumulation type (float32 for float32/16-bit inputs,
  // float64 for float64), weight gradients in float64; converted to the input dtype below.
  const at::ScalarType acc_type = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::TensorOptions acc_opts = opts.dtype(acc_type);
  const at::TensorOptions dbl_opts = opts.dtype(at::kDouble);
  auto alloc = [](at::IntArrayRef sizes, const at::TensorOptions& o, bool zero) {
    return zero ? at::zeros(sizes, o) : at::empty(sizes, o);
  };
  at::Tensor gi_acc, gw_acc, gkb_acc, dx_ws, dw_ws, dkb_ws;
  if (need_input) {
    gi_acc = alloc(input.sizes(), acc_opts, plan.dx_zero_init);
    if (plan.dx_ws_elems > 0) dx_ws = at::empty({plan.dx_ws_elems}, acc_opts);
  }
  if (need_weight) {
    gw_acc = alloc(weight.sizes(), dbl_opts, plan.dw_zero_init);
    gkb_acc = alloc({s.O, Cg, s.kH, s.kW}, dbl_opts, plan.dw_zero_init);
    if (plan.dw_ws_elems > 0) dw_ws = at::empty({plan.dw_ws_elems}, dbl_opts);
    if (plan.dkb_ws_elems > 0) dkb_ws = at::empty({plan.dkb_ws_elems}, dbl_opts);
  }

  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  dispatch(x.scalar_type(), plan.use_int64, [&](auto st, auto it) {
    using scalar_t = typename decltype(st)::type;
    using index_t = typename decltype(it)::type;
    using acc_t = typename cuda::AccType<scalar_t>::type;
    cuda::BackwardBuffers<scalar_t> buf;
    buf.grad_output = cptr<scalar_t>(go);
    buf.input = cptr<scalar_t>(x);
    buf.weight = cptr<scalar_t>(w);
    buf.kernel_bias = cptr<scalar_t>(kb);
    buf.grad_input = mptr<acc_t>(gi_acc);
    buf.grad_weight = mptr<double>(gw_acc);
    buf.grad_kernel_bias = mptr<double>(gkb_acc);
    buf.dx_workspace = mptr<acc_t>(dx_ws);
    buf.dw_workspace = mptr<double>(dw_ws);
    buf.dkb_workspace = mptr<double>(dkb_ws);
    check_launch(cuda::launch_backward<scalar_t, index_t>(s, plan, buf, stream),
                 "backward kernel launch");
  });

  if (need_input) grad_input = gi_acc.to(x.scalar_type());  // no copy for float32/float64
  if (need_weight) {
    grad_weight = gw_acc.to(w.scalar_type());
    grad_kernel_bias = gkb_acc.to(w.scalar_type());
  }
  return {grad_input, grad_weight, grad_kernel_bias};
}

}  // namespace
}  // namespace adaptive_conv_ext

TORCH_LIBRARY_IMPL(adaptive_conv_ext, CUDA, m) {
  m.impl("adaptive_conv2d_forward", &adaptive_conv_ext::adaptive_conv2d_forward_cuda);
  m.impl("adaptive_conv2d_backward", &adaptive_conv_ext::adaptive_conv2d_backward_cuda);
}
