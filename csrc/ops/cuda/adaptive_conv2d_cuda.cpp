// CUDA implementations of the adaptive_conv_ext operators (schemas in ../schemas.cpp),
// on the LibTorch stable ABI. Torch-facing glue only: checks, allocation, dtype and
// index-width dispatch; the planner and kernels are in planner.cu and kernels_*.cu (torch-free).
#include <dlfcn.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>

#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "../adaptive_conv2d.h"
#include "adaptive_conv2d_kernels.cuh"

namespace adaptive_conv_ext {
namespace {

using torch::headeronly::ScalarType;

template <typename T>
struct Tag {
  using type = T;
};

cuda::DType dtype_of(ScalarType t) {
  switch (t) {
    case ScalarType::Float: return cuda::DType::kFloat32;
    case ScalarType::Double: return cuda::DType::kFloat64;
    case ScalarType::Half: return cuda::DType::kFloat16;
    case ScalarType::BFloat16: return cuda::DType::kBFloat16;
    default:
      STD_TORCH_CHECK(false, "adaptive_conv2d (CUDA): unsupported dtype ", t,
                      "; use float32, float64, float16 or bfloat16");
  }
}

// Calls f(Tag<scalar_t>{}, Tag<index_t>{}) for the tensor dtype and index width.
template <typename F>
void dispatch(ScalarType t, bool use_int64, F&& f) {
  auto with_index = [&](auto scalar_tag) {
    if (use_int64) {
      f(scalar_tag, Tag<int64_t>{});
    } else {
      f(scalar_tag, Tag<int32_t>{});
    }
  };
  switch (dtype_of(t)) {
    case cuda::DType::kFloat32: return with_index(Tag<float>{});
    case cuda::DType::kFloat64: return with_index(Tag<double>{});
    case cuda::DType::kFloat16: return with_index(Tag<__half>{});         // layout of torch's Half
    case cuda::DType::kBFloat16: return with_index(Tag<__nv_bfloat16>{});  // and BFloat16
  }
}

template <typename T>
const T* cptr(const Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr());
}
template <typename T>
T* mptr(const Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr());
}
template <typename T>
const T* cptr(const std::optional<Tensor>& t) {
  return t.has_value() ? cptr<T>(*t) : nullptr;
}
template <typename T>
T* mptr(const std::optional<Tensor>& t) {
  return t.has_value() ? mptr<T>(*t) : nullptr;
}

std::optional<Tensor> contiguous(const std::optional<Tensor>& t) {
  return t.has_value() ? std::optional<Tensor>(torch::stable::contiguous(*t)) : std::nullopt;
}

void check_cuda(const Tensor& t, const char* name, const Tensor& input) {
  STD_TORCH_CHECK(t.is_cuda(), "adaptive_conv2d (CUDA): ", name, " must be a CUDA tensor");
  STD_TORCH_CHECK(t.get_device_index() == input.get_device_index(), "adaptive_conv2d (CUDA): ",
                  name, " is on cuda:", t.get_device_index(), " but input is on cuda:",
                  input.get_device_index());
}

std::string shape_str(const AdaptiveConvShape& s) {
  std::ostringstream out;
  out << "input (" << s.N << ", " << s.C << ", " << s.H << ", " << s.W << "), kernel " << s.kH
      << "x" << s.kW << ", " << s.O << " output channels, groups " << s.groups << ", stride ("
      << s.sH << ", " << s.sW << "), padding (" << s.pH << ", " << s.pW << "), dilation (" << s.dH
      << ", " << s.dW << ")";
  return out.str();
}

// A failed launch (or an earlier asynchronous error it reports) as a RuntimeError
// naming the problem.
void check_launch(cudaError_t e, const char* what, const AdaptiveConvShape& s) {
  STD_TORCH_CHECK(e == cudaSuccess, "adaptive_conv2d (CUDA) ", what, " failed for ", shape_str(s),
                  ": ", cudaGetErrorName(e), ": ", cudaGetErrorString(e));
}

// torch's current CUDA stream on the device. aoti_torch_get_current_cuda_stream is a
// stable C-shim function (torch/csrc/inductor/aoti_torch/c/shim.h) but it is defined in
// libtorch_cuda, which this library does not link: it is looked up in the libtorch_cuda
// the running torch has already loaded (the CUDA library is only loaded when it has).
cudaStream_t current_stream(int32_t device_index) {
  using GetStream = int32_t (*)(int32_t, void**);
  static const GetStream get_stream = [] {
    void* lib = dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_NOLOAD);
    return lib ? reinterpret_cast<GetStream>(dlsym(lib, "aoti_torch_get_current_cuda_stream")) : nullptr;
  }();
  STD_TORCH_CHECK(get_stream != nullptr,
                  "adaptive_conv2d (CUDA): aoti_torch_get_current_cuda_stream not found in the "
                  "loaded libtorch_cuda.so (is this torch built with CUDA?)");
  void* stream = nullptr;
  STD_TORCH_CHECK(get_stream(device_index, &stream) == AOTI_TORCH_SUCCESS,
                  "adaptive_conv2d (CUDA): could not get the current CUDA stream of cuda:",
                  device_index);
  return static_cast<cudaStream_t>(stream);
}

// The planner calls, in one place each (the device limits they need are queried here).
cuda::ForwardPlan make_forward_plan(ScalarType dtype, const AdaptiveConvShape& s) {
  cuda::ForwardPlan plan;
  cuda::DeviceLimits limits;
  std::string why;
  // limits of the current device (the caller's DeviceGuard selected it)
  STD_TORCH_CHECK(cuda::query_device_limits(&limits, &why) &&
                      cuda::plan_forward(dtype_of(dtype), s, limits, &plan, &why),
                  "adaptive_conv2d (CUDA) forward: cannot run ", shape_str(s), ": ", why);
  return plan;
}

cuda::BackwardPlan make_backward_plan(ScalarType dtype, const AdaptiveConvShape& s, bool need_input,
                                      bool need_weight, bool deterministic) {
  cuda::BackwardPlan plan;
  cuda::DeviceLimits limits;
  std::string why;
  STD_TORCH_CHECK(cuda::query_device_limits(&limits, &why) &&
                      cuda::plan_backward(dtype_of(dtype), s, need_input, need_weight, deterministic,
                                          limits, &plan, &why),
                  "adaptive_conv2d (CUDA) backward: cannot run ", shape_str(s), ": ", why);
  return plan;
}

Tensor adaptive_conv2d_forward_cuda(const Tensor& input, const Tensor& weight,
                                    const std::optional<Tensor>& kernel_bias,
                                    const std::optional<Tensor>& bias, IntList stride,
                                    IntList padding, IntList dilation, int64_t groups) {
  const AdaptiveConvShape s =
      check_and_make_shape(input, weight, kernel_bias, bias, stride, padding, dilation, groups);
  check_cuda(input, "input", input);
  check_cuda(weight, "weight", input);
  const int32_t device = input.get_device_index();
  torch::stable::accelerator::DeviceGuard guard(device);

  const Tensor x = torch::stable::contiguous(input);
  const Tensor w = torch::stable::contiguous(weight);
  const std::optional<Tensor> kb = contiguous(kernel_bias), b = contiguous(bias);
  Tensor y = torch::stable::new_empty(x, {s.N, s.O, s.Ho, s.Wo});  // contiguous NCHW
  if (y.numel() == 0) return y;  // N == 0 or O == 0: nothing to launch

  const cuda::ForwardPlan plan = make_forward_plan(x.scalar_type(), s);
  const cudaStream_t stream = current_stream(device);
  const std::optional<Tensor> q_pack =
      plan.q_pack_elems > 0 ? std::optional<Tensor>(torch::stable::new_empty(x, {plan.q_pack_elems}))
                            : std::nullopt;
  dispatch(x.scalar_type(), plan.use_int64, [&](auto st, auto it) {
    using scalar_t = typename decltype(st)::type;
    using index_t = typename decltype(it)::type;
    check_launch(cuda::launch_forward<scalar_t, index_t>(s, plan, cptr<scalar_t>(x), cptr<scalar_t>(w),
                                                         cptr<scalar_t>(kb), cptr<scalar_t>(b),
                                                         mptr<scalar_t>(y), mptr<scalar_t>(q_pack), stream),
                 "forward kernel launch", s);
  });
  return y;
}

std::tuple<Tensor, Tensor, Tensor> adaptive_conv2d_backward_cuda(
    const Tensor& grad_output, const Tensor& input, const Tensor& weight,
    const std::optional<Tensor>& kernel_bias, IntList stride, IntList padding, IntList dilation,
    int64_t groups, std::vector<bool> output_mask, bool deterministic) {
  const AdaptiveConvShape s = check_and_make_shape(input, weight, kernel_bias, std::nullopt, stride,
                                                   padding, dilation, groups);
  check_cuda(input, "input", input);
  check_cuda(weight, "weight", input);
  check_cuda(grad_output, "grad_output", input);
  check_grad_output(grad_output, input, s);
  STD_TORCH_CHECK(output_mask.size() == 2, "adaptive_conv2d_backward: output_mask must have 2 elements");
  const int32_t device = input.get_device_index();
  torch::stable::accelerator::DeviceGuard guard(device);

  const bool need_input = output_mask[0];
  const bool need_weight = output_mask[1];  // covers weight and kernel_bias
  const ScalarType dtype = input.scalar_type();
  const int64_t Cg = s.in_per_group();
  auto none = [&] { return torch::stable::new_empty(input, {0}); };  // one per output: no aliasing
  if (!need_input && !need_weight) return {none(), none(), none()};

  const bool empty_problem = s.N == 0 || s.C == 0 || s.O == 0;
  if (empty_problem) {  // nothing flows: zero gradients of the right shapes, no launch
    return {need_input ? torch::stable::new_zeros(input, input.sizes()) : none(),
            need_weight ? torch::stable::new_zeros(input, weight.sizes()) : none(),
            need_weight ? torch::stable::new_zeros(input, {s.O, Cg, s.kH, s.kW}) : none()};
  }

  const Tensor go = torch::stable::contiguous(grad_output);
  const Tensor x = torch::stable::contiguous(input);
  const Tensor w = torch::stable::contiguous(weight);
  const std::optional<Tensor> kb = contiguous(kernel_bias);
  const cuda::BackwardPlan plan = make_backward_plan(dtype, s, need_input, need_weight, deterministic);

  // Accumulators: grad_input in the accumulation type (float32 for float32/16-bit inputs,
  // float64 for float64), weight gradients in float64; converted to the input dtype below.
  const ScalarType acc_type = dtype == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  auto alloc = [&](IntList sizes, ScalarType t, bool zero) {
    return std::optional<Tensor>(zero ? torch::stable::new_zeros(input, sizes, t)
                                      : torch::stable::new_empty(input, sizes, t));
  };
  std::optional<Tensor> gi_acc, gw_acc, gkb_acc, dx_ws, dw_ws, dkb_ws;
  if (need_input) {
    gi_acc = alloc(input.sizes(), acc_type, plan.dx_zero_init);
    if (plan.dx_ws_elems > 0) dx_ws = alloc({plan.dx_ws_elems}, acc_type, false);
  }
  if (need_weight) {
    gw_acc = alloc(weight.sizes(), ScalarType::Double, plan.dw_zero_init);
    gkb_acc = alloc({s.O, Cg, s.kH, s.kW}, ScalarType::Double, plan.dw_zero_init);
    if (plan.dw_ws_elems > 0) dw_ws = alloc({plan.dw_ws_elems}, ScalarType::Double, false);
    if (plan.dkb_ws_elems > 0) dkb_ws = alloc({plan.dkb_ws_elems}, ScalarType::Double, false);
  }

  const cudaStream_t stream = current_stream(device);
  dispatch(dtype, plan.use_int64, [&](auto st, auto it) {
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
                 "backward kernel launch", s);
  });

  // to() returns the accumulator itself when the dtypes agree (float32/float64 grad_input)
  return {need_input ? torch::stable::to(*gi_acc, dtype) : none(),
          need_weight ? torch::stable::to(*gw_acc, dtype) : none(),
          need_weight ? torch::stable::to(*gkb_acc, dtype) : none()};
}

}  // namespace
}  // namespace adaptive_conv_ext

STABLE_TORCH_LIBRARY_IMPL(adaptive_conv_ext, CUDA, m) {
  m.impl("adaptive_conv2d_forward", TORCH_BOX(&adaptive_conv_ext::adaptive_conv2d_forward_cuda));
  m.impl("adaptive_conv2d_backward", TORCH_BOX(&adaptive_conv_ext::adaptive_conv2d_backward_cuda));
}
