// Problem geometry shared by every native backend. Free of torch headers so
// that the CUDA kernels (compiled by nvcc alone) can include it too.
#pragma once
#include <cstdint>

namespace adaptive_conv_ext {

struct AdaptiveConvShape {
  int64_t N, C, H, W;    // input
  int64_t O, groups;     // output channels, groups
  int64_t kH, kW;        // kernel size
  int64_t sH, sW;        // stride
  int64_t pH, pW;        // zero padding
  int64_t dH, dW;        // dilation
  int64_t Ho, Wo;        // output size

  int64_t taps() const { return kH * kW; }              // T = kH*kW
  int64_t in_per_group() const { return C / groups; }   // C/g
  int64_t out_per_group() const { return O / groups; }  // O/g
  // Elements of sigma (and of K) for the whole problem: what fused kernels never store.
  int64_t sigma_numel() const { return N * O * in_per_group() * taps() * Ho * Wo; }
};

}  // namespace adaptive_conv_ext
