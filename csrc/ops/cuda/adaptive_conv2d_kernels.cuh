// CUDA kernels for adaptive_conv2d: the torch-free interface.
//
// Everything here is plain C++/CUDA (no torch headers) so that nvcc can compile
// the kernels on its own and the torch binding (adaptive_conv2d_cuda.cpp, built
// by the host compiler) can call them through explicit template instantiations.
//
// Use: query_device_limits describes the current device; plan_forward/plan_backward
// pick tiles, shared-memory sizes, workspace sizes, the kernel variant and the index
// width for one call on a device with those limits (pure functions, no CUDA calls), and
// fill the kernels' configuration structs (kernels/configs.h); the caller allocates what
// the plan asks for and calls launch_forward/launch_backward with the matching
// <scalar_t, index_t> (index_t = int64_t iff plan.use_int64), which launch the plan's
// kernels as planned. Definitions: planner.cu (kernels/planner.cuh) and kernels_*.cu
// (kernels/launchers.cuh, one dtype per file); kernels/README.md gives the overview.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <variant>

#include "../adaptive_conv2d_shape.h"
#include "kernels/configs.h"

namespace adaptive_conv_ext {
namespace cuda {

enum class DType { kFloat32, kFloat64, kFloat16, kBFloat16 };

// Accumulation type: float for float32/float16/bfloat16, double for float64.
template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

// The forward: one kernel (the tensor-core one after its Q-packing kernel, or a scalar one),
// launched with geom and cfg as they are.
struct ForwardPlan {
  Geom geom{};
  FwdCfg cfg{};           // complete: tile, output channels per block (oct), channel chunk (cch), ...
  int smem_bytes = 0;     // dynamic shared memory of the forward kernel
  bool use_int64 = false;
  bool static_taps = false;  // compile-time kernel size (3x3, 5x5, 7x7) kernel is used
  // Tensor-core kernel (float16/bfloat16): sigma as mma.sync GEMMs with K = 16 * mma_ks
  // (taps + the beta column); cfg.tt == taps and cfg.off_box counts 16-bit elements
  // (kernels/forward_mma.cuh).
  bool mma = false;
  int mma_ks = 0;
  int mma_tail = -1;  // kernel variant: T = 8 mma_tail + 1 at compile time (odd square kernels), -1: any T
  // Tensor-core kernel: Q and beta packed once per call (adaptive_conv2d_pack_q_mma_kernel)
  // into a 16-bit workspace of q_pack_elems elements that the caller allocates; per round
  // the blocks copy it into shared memory as it is. q_last_shared: the last tap of all oct
  // output channels is one n8 tile of its own (odd square kernels, oct >= 2).
  int64_t q_pack_elems = 0;
  bool q_last_shared = false;
};

// How grad_input leaves a block (kernels/README.md).
enum class DxMode : int {
  kStore = 0,   // one tile covers the whole image: plain stores into a zeroed buffer
  kAtomic = 1,  // atomicAdd into a zeroed buffer (non-deterministic order across tiles)
  kWorkspace = 2,  // per-tile boxes into a workspace, summed in fixed order by a gather kernel
};
// How the weight / kernel_bias gradients leave a block.
enum class DwMode : int {
  kStore = 0,      // one split: every entry written once, plain stores
  kAtomic = 1,     // double atomicAdd into a zeroed buffer
  kWorkspace = 2,  // per-split partials, reduced in fixed order by a second kernel
};

// The scalar backward (any dtype): a grad_input kernel (need_input) and a grad_weight /
// grad_kernel_bias kernel (need_weight), each with its own tile.
struct ScalarBackwardPlan {
  DxCfg dx{};  // also the deterministic gather's view of the grad_input tiles
  bool dx_static = false;  // compile-time kernel size
  int dx_smem = 0;
  DwCfg dw{};
  bool dw_static = false;
  int dw_aw = 8;  // dQ columns per reduction thread (the kernel's AW template argument)
  int dw_smem = 0;
};

// The fused tensor-core backward (float16/bfloat16, kernels/backward_mma.cuh): one kernel
// for the wanted gradients (grads, BwdGrads), K = 16 * ks, 32-bit indexing.
struct MmaBackwardPlan {
  BwdMmaCfg cfg{};
  DxCfg gather{};  // the deterministic gather's view of the same tiles
  int grads = kBwdBoth;
  int ks = 0;
  int tail = -1;  // kernel variant, as ForwardPlan::mma_tail
  int smem = 0;
};

struct BackwardPlan {
  bool need_input = false, need_weight = false, deterministic = false;
  bool use_int64 = false;
  Geom geom{};
  // What the caller allocates and zeroes, and how the gradients leave the blocks.
  DxMode dx_mode = DxMode::kAtomic;
  bool dx_zero_init = false;     // caller must zero the grad_input accumulator
  int64_t dx_ws_elems = 0;       // accumulator-typed workspace (kWorkspace)
  int64_t w_splits = 1;          // partial sums per grad_weight entry
  DwMode dw_mode = DwMode::kStore;
  bool dw_zero_init = false;     // caller must zero the (double) weight accumulators
  int64_t dw_ws_elems = 0, dkb_ws_elems = 0;  // double workspaces (kWorkspace)
  // Elements of grad_input, grad_weight and grad_kernel_bias (the gather and split reduction).
  int64_t dx_elems = 0, dw_elems = 0, dkb_elems = 0;
  std::variant<ScalarBackwardPlan, MmaBackwardPlan> kernels;

  bool mma() const { return std::holds_alternative<MmaBackwardPlan>(kernels); }
  const MmaBackwardPlan* mma_plan() const { return std::get_if<MmaBackwardPlan>(&kernels); }
  const ScalarBackwardPlan* scalar_plan() const { return std::get_if<ScalarBackwardPlan>(&kernels); }
};

// What the planner needs to know about the device. The caller queries it
// (query_device_limits); the planner itself calls no CUDA API, so that it is a pure function
// of its arguments (the emulation and the static model plan for devices they do not have).
struct DeviceLimits {
  int sms = 1;                          // multiprocessors
  int64_t smem_optin = 48 * 1024;       // dynamic shared memory per block, with opt-in
  int64_t smem_per_sm = 49 * 1024;      // shared memory per multiprocessor (1 KB per block reserved)
  int regs_per_sm = 64 * 1024;          // 32-bit registers per multiprocessor
  int arch = 90;                        // compute capability, major * 10 + minor
};
bool query_device_limits(DeviceLimits* limits, std::string* why);

// Return false (and a reason naming the shape) when the problem cannot be run by these
// kernels (a dilated kernel extent so large that not even a 1x1 tile fits in shared memory).
// allow_mma = false keeps the 16-bit forward on the scalar kernels (tests compare both).
bool plan_forward(DType dtype, const AdaptiveConvShape& s, const DeviceLimits& limits, ForwardPlan* plan,
                  std::string* why, bool allow_mma = true);
// allow_mma = false keeps the 16-bit backward on the scalar kernels. The fused tensor-core
// backward is planned for float16/bfloat16 whenever it fits, for any non-empty set of
// gradients (need_input, need_weight).
bool plan_backward(DType dtype, const AdaptiveConvShape& s, bool need_input, bool need_weight,
                   bool deterministic, const DeviceLimits& limits, BackwardPlan* plan, std::string* why,
                   bool allow_mma = true);

// Forward: output (N, O, Ho, Wo) contiguous, every element written. q_pack: the
// plan.q_pack_elems-element workspace (null when that is 0).
template <typename scalar_t, typename index_t>
cudaError_t launch_forward(const AdaptiveConvShape& s, const ForwardPlan& plan,
                           const scalar_t* input, const scalar_t* weight,
                           const scalar_t* kernel_bias,  // may be null
                           const scalar_t* bias,         // may be null
                           scalar_t* output, scalar_t* q_pack, cudaStream_t stream);

template <typename scalar_t>
struct BackwardBuffers {
  using acc_t = typename AccType<scalar_t>::type;
  const scalar_t* grad_output = nullptr;  // (N, O, Ho, Wo) contiguous
  const scalar_t* input = nullptr;
  const scalar_t* weight = nullptr;
  const scalar_t* kernel_bias = nullptr;  // may be null
  acc_t* grad_input = nullptr;    // (N, C, H, W) accumulator; zeroed iff plan.dx_zero_init
  double* grad_weight = nullptr;  // weight-shaped double accumulator; zeroed iff plan.dw_zero_init
  double* grad_kernel_bias = nullptr;  // (O, C/g, kH, kW) double accumulator; same rule
  acc_t* dx_workspace = nullptr;  // plan.dx_ws_elems
  double* dw_workspace = nullptr;   // plan.dw_ws_elems
  double* dkb_workspace = nullptr;  // plan.dkb_ws_elems
};

template <typename scalar_t, typename index_t>
cudaError_t launch_backward(const AdaptiveConvShape& s, const BackwardPlan& plan,
                            const BackwardBuffers<scalar_t>& buf, cudaStream_t stream);

// The launchers of one (dtype, index type). Declared here with KEYWORDS = `extern template`;
// each dtype is instantiated in a .cu file of its own (parallel builds) with
// ADAPTIVE_CONV_INSTANTIATE.
#define ADAPTIVE_CONV_LAUNCHERS(KEYWORDS, scalar_t, index_t)                                  \
  KEYWORDS cudaError_t launch_forward<scalar_t, index_t>(                                     \
      const AdaptiveConvShape&, const ForwardPlan&, const scalar_t*, const scalar_t*,         \
      const scalar_t*, const scalar_t*, scalar_t*, scalar_t*, cudaStream_t);                  \
  KEYWORDS cudaError_t launch_backward<scalar_t, index_t>(                                    \
      const AdaptiveConvShape&, const BackwardPlan&, const BackwardBuffers<scalar_t>&,        \
      cudaStream_t);
#define ADAPTIVE_CONV_DECLARE(scalar_t)                          \
  ADAPTIVE_CONV_LAUNCHERS(extern template, scalar_t, int32_t)    \
  ADAPTIVE_CONV_LAUNCHERS(extern template, scalar_t, int64_t)
#define ADAPTIVE_CONV_INSTANTIATE(scalar_t)               \
  ADAPTIVE_CONV_LAUNCHERS(template, scalar_t, int32_t)    \
  ADAPTIVE_CONV_LAUNCHERS(template, scalar_t, int64_t)
ADAPTIVE_CONV_DECLARE(float)
ADAPTIVE_CONV_DECLARE(double)
ADAPTIVE_CONV_DECLARE(__half)
ADAPTIVE_CONV_DECLARE(__nv_bfloat16)
#undef ADAPTIVE_CONV_DECLARE

}  // namespace cuda
}  // namespace adaptive_conv_ext
