// The operator schemas (one STABLE_TORCH_LIBRARY block, in the CPU library: the CUDA
// library only adds kernels). Device kernels are registered beside their code with
// STABLE_TORCH_LIBRARY_IMPL.
#include <torch/csrc/stable/library.h>

// Backward returns the gradients of input, weight and kernel_bias; the bias gradient
// (a plain sum of grad_output) is taken in Python. output_mask = [input,
// weight/kernel_bias]: a masked-off gradient comes back as an empty tensor and is not
// computed. deterministic: what torch.are_deterministic_algorithms_enabled() said at
// the call (the stable ABI has no at::globalContext(); the Python layer passes it).
STABLE_TORCH_LIBRARY(adaptive_conv_ext, m) {
  m.def(
      "adaptive_conv2d_forward(Tensor input, Tensor weight, Tensor? kernel_bias, Tensor? bias, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups) -> Tensor");
  m.def(
      "adaptive_conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, "
      "Tensor? kernel_bias, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "bool[2] output_mask, bool deterministic=False) -> (Tensor, Tensor, Tensor)");
}
