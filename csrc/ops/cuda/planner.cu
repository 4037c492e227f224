// adaptive_conv2d CUDA, host side only: the planner (kernels/planner.cuh, a pure function of
// the shape and DeviceLimits) and query_device_limits, the one place that asks the device.
// The kernels and their launchers are in kernels_{f32,f16,bf16,f64}.cu.
#include "kernels/planner.cuh"

#include <utility>

namespace adaptive_conv_ext {
namespace cuda {

bool query_device_limits(DeviceLimits* limits, std::string* why) {
  int dev = 0, sms = 0, optin = 0, per_sm = 0, regs = 0, major = 0, minor = 0;
  cudaError_t e = cudaGetDevice(&dev);
  const std::pair<int*, cudaDeviceAttr> attrs[] = {
      {&sms, cudaDevAttrMultiProcessorCount},
      {&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin},
      {&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor},
      {&regs, cudaDevAttrMaxRegistersPerMultiprocessor},
      {&major, cudaDevAttrComputeCapabilityMajor},
      {&minor, cudaDevAttrComputeCapabilityMinor}};
  for (const auto& [value, attr] : attrs) {
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(value, attr, dev);
  }
  if (e != cudaSuccess) {
    *why = std::string("could not query the CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  limits->sms = sms;
  limits->smem_optin = optin;
  limits->smem_per_sm = per_sm;
  limits->regs_per_sm = regs;
  limits->arch = 10 * major + minor;
  return true;
}

}  // namespace cuda
}  // namespace adaptive_conv_ext
