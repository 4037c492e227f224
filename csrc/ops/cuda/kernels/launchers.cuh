// Host-side launchers: the kernels a plan names, launched with the plan's configurations as
// they are (the planner, planner.cuh, made every decision and checked that the kernel
// exists; an assert guards that in debug builds).
#pragma once

#include <cassert>

#include "backward_input.cuh"
#include "backward_mma.cuh"
#include "backward_weight.cuh"
#include "forward.cuh"
#include "forward_mma.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

template <typename K>
cudaError_t prepare_smem(K kernel, int bytes) {
  if (bytes <= kDefaultSmem) return cudaSuccess;
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                              cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

inline unsigned grid_for(long long items) {
  return static_cast<unsigned>(std::min<long long>(std::max<long long>(items, 1), kMaxGridBlocks));
}

template <typename scalar_t, typename index_t>
constexpr bool kStaticVariants =
    std::is_same<index_t, int32_t>::value && !std::is_same<scalar_t, double>::value;

template <typename scalar_t, typename index_t>
using FwdKernel = void (*)(Geom, FwdCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                           const scalar_t*, scalar_t*);

// The compile-time-size variant (3x3, 5x5, 7x7: kernel_of(std::integral_constant<int, k>))
// of a scalar kernel where the plan says so (st), else the generic one (k = 0). Giant
// (int64-indexed) problems and float64 (there for accuracy and gradcheck, not speed; its
// 7x7 bodies would need > 255 registers) have only the generic kernel (kHasStatic false).
template <bool kHasStatic, typename KernelOf>
auto pick_scalar(bool st, int k, KernelOf&& kernel_of) {
  if constexpr (kHasStatic) {
    if (st && k == 3) return kernel_of(std::integral_constant<int, 3>{});
    if (st && k == 5) return kernel_of(std::integral_constant<int, 5>{});
    if (st && k == 7) return kernel_of(std::integral_constant<int, 7>{});
  }
  assert(!st && "planned compile-time tap counts where none is compiled");
  return kernel_of(std::integral_constant<int, 0>{});
}

template <typename scalar_t, typename index_t>
FwdKernel<scalar_t, index_t> pick_fwd(bool st, int k) {
  return pick_scalar<kStaticVariants<scalar_t, index_t>>(st, k, [](auto K) -> FwdKernel<scalar_t, index_t> {
    constexpr int kSize = decltype(K)::value;
    return adaptive_conv2d_fwd_kernel<scalar_t, index_t, kSize, kSize>;
  });
}

// Tensor-core forward for K = 16 * ks: float16/bfloat16 with 32-bit indices only; the odd
// square kernels (T = 1, 9, 25, 49) have compile-time tile counts of their own, and a
// variant with the shared last-tap tile (plan.q_last_shared).
template <typename scalar_t>
using FwdMmaKernel = void (*)(Geom, FwdCfg, const scalar_t*, const scalar_t*, const scalar_t*, scalar_t*);

template <typename scalar_t, int KS, int kTail>
FwdMmaKernel<scalar_t> fwd_mma_variant(bool shared) {
  if constexpr (kTail >= 0) {
    if (shared) return adaptive_conv2d_fwd_mma_kernel<scalar_t, KS, kTail, true>;
  }
  assert(!shared && "the shared last-tap tile needs an odd square kernel");
  return adaptive_conv2d_fwd_mma_kernel<scalar_t, KS, kTail, false>;
}

// The variant (ks, tail) of MmaVariants (configs.h); null for a (ks, tail) or dtype that
// has none, which the planner never plans.
template <typename scalar_t>
FwdMmaKernel<scalar_t> pick_fwd_mma(int ks, int tail, bool shared) {
  FwdMmaKernel<scalar_t> kernel = nullptr;
  if constexpr (std::is_same<scalar_t, __half>::value || std::is_same<scalar_t, __nv_bfloat16>::value) {
    visit_mma_variant(ks, tail, [&](auto v) {
      kernel = fwd_mma_variant<scalar_t, decltype(v)::ks, decltype(v)::tail>(shared);
    });
  }
  return kernel;
}

template <typename scalar_t>
using PackQKernel = void (*)(Geom, FwdCfg, const scalar_t*, const scalar_t*, scalar_t*);

template <typename scalar_t>
PackQKernel<scalar_t> pick_pack_q_mma(int ks) {
  if constexpr (std::is_same<scalar_t, __half>::value || std::is_same<scalar_t, __nv_bfloat16>::value) {
    if (ks == 1) return adaptive_conv2d_pack_q_mma_kernel<1, scalar_t>;
    if (ks == 2) return adaptive_conv2d_pack_q_mma_kernel<2, scalar_t>;
    if (ks == 3) return adaptive_conv2d_pack_q_mma_kernel<3, scalar_t>;
    if (ks == 4) return adaptive_conv2d_pack_q_mma_kernel<4, scalar_t>;
  }
  return nullptr;
}

template <typename scalar_t, typename index_t>
using DxKernel = void (*)(Geom, DxCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                          const scalar_t*, typename AccType<scalar_t>::type*,
                          typename AccType<scalar_t>::type*);

template <typename scalar_t, typename index_t>
DxKernel<scalar_t, index_t> pick_dx(bool st, int k) {
  return pick_scalar<kStaticVariants<scalar_t, index_t>>(st, k, [](auto K) -> DxKernel<scalar_t, index_t> {
    constexpr int kSize = decltype(K)::value;
    return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, kSize, kSize>;
  });
}

template <typename scalar_t, typename index_t>
using DwKernel = void (*)(Geom, DwCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                          const scalar_t*, double*, double*, double*, double*);

// AW, the dQ columns per reduction thread: dw_columns (configs.h), as the planner laid out.
template <typename scalar_t, typename index_t>
DwKernel<scalar_t, index_t> pick_dw(bool st, int k) {
  return pick_scalar<kStaticVariants<scalar_t, index_t>>(st, k, [](auto K) -> DwKernel<scalar_t, index_t> {
    constexpr int kSize = decltype(K)::value;
    return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, kSize, kSize, dw_columns(kSize)>;
  });
}

// Deterministic grad_input: the fixed-order gather of the per-tile workspace boxes.
template <typename acc_t, typename index_t>
cudaError_t launch_gather_dx(const BackwardPlan& plan, const DxCfg& c, const acc_t* ws, acc_t* grad_in,
                             cudaStream_t stream) {
  const long long total = plan.dx_elems;
  const long long blocks = std::min<long long>(ceil_div(total, kThreads), 65536LL * 16);
  ADAPTIVE_CONV_LAUNCH((adaptive_conv2d_gather_dx_kernel<acc_t, index_t>), grid_for(blocks), kThreads, 0, stream,
                       plan.geom, c, ws, grad_in, total);
  return cudaGetLastError();
}

// Deterministic grad_weight / grad_kernel_bias: the per-split partials summed in split order.
inline cudaError_t launch_reduce_splits(const BackwardPlan& plan, const double* ws_w, double* grad_w,
                                        const double* ws_kb, double* grad_kb, cudaStream_t stream) {
  const long long E = plan.dw_elems, Eb = plan.dkb_elems, splits = plan.w_splits;
  ADAPTIVE_CONV_LAUNCH(adaptive_conv2d_reduce_splits_kernel, grid_for(std::min<long long>(ceil_div(E, kThreads), 1 << 20)),
                       kThreads, 0, stream, ws_w, grad_w, E, splits);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  ADAPTIVE_CONV_LAUNCH(adaptive_conv2d_reduce_splits_kernel, grid_for(std::min<long long>(ceil_div(Eb, kThreads), 1 << 20)),
                       kThreads, 0, stream, ws_kb, grad_kb, Eb, splits);
  return cudaGetLastError();
}

template <typename scalar_t>
using BwdMmaKernel = void (*)(Geom, BwdMmaCfg, const scalar_t*, const scalar_t*, const scalar_t*, const scalar_t*,
                              float*, float*, double*, double*, double*, double*);

template <typename scalar_t, int KS, int kTail>
BwdMmaKernel<scalar_t> bwd_mma_variant(int grads) {
  if (grads == kBwdInput) return adaptive_conv2d_bwd_mma_kernel<scalar_t, KS, kTail, kBwdInput>;
  if (grads == kBwdWeight) return adaptive_conv2d_bwd_mma_kernel<scalar_t, KS, kTail, kBwdWeight>;
  return adaptive_conv2d_bwd_mma_kernel<scalar_t, KS, kTail, kBwdBoth>;
}

// Fused tensor-core backward for K = 16 * ks and the gradients in grads (BwdGrads), the
// variant (ks, tail) of MmaVariants: float16/bfloat16 with 32-bit indices only (null
// otherwise, which the planner never plans).
template <typename scalar_t, typename index_t>
BwdMmaKernel<scalar_t> pick_bwd_mma(int ks, int tail, int grads) {
  BwdMmaKernel<scalar_t> kernel = nullptr;
  constexpr bool k16 = std::is_same<scalar_t, __half>::value || std::is_same<scalar_t, __nv_bfloat16>::value;
  if constexpr (k16 && std::is_same<index_t, int32_t>::value) {
    visit_mma_variant(ks, tail, [&](auto v) {
      kernel = bwd_mma_variant<scalar_t, decltype(v)::ks, decltype(v)::tail>(grads);
    });
  }
  return kernel;
}

// The fused backward, then (deterministic mode) the fixed-order gather of the grad_input
// boxes and the split reduction of grad_weight / grad_kernel_bias.
template <typename scalar_t, typename index_t>
cudaError_t launch_backward_mma(const AdaptiveConvShape& s, const BackwardPlan& plan, const MmaBackwardPlan& m,
                                const BackwardBuffers<scalar_t>& buf, cudaStream_t stream) {
  if (s.N == 0 || s.C == 0) return cudaSuccess;  // nothing to write (the plan zeroes grad_weight)
  const auto kernel = pick_bwd_mma<scalar_t, index_t>(m.ks, m.tail, m.grads);
  assert(kernel != nullptr && "planned a tensor-core backward that is not compiled");
  cudaError_t e = prepare_smem(kernel, m.smem);
  if (e != cudaSuccess) return e;
  ADAPTIVE_CONV_LAUNCH(kernel, grid_for(m.cfg.items), kThreads, m.smem, stream, plan.geom, m.cfg, buf.grad_output,
                       buf.input, buf.weight, buf.kernel_bias, reinterpret_cast<float*>(buf.grad_input),
                       reinterpret_cast<float*>(buf.dx_workspace), buf.grad_weight, buf.grad_kernel_bias,
                       buf.dw_workspace, buf.dkb_workspace);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if (plan.need_input && plan.dx_mode == DxMode::kWorkspace) {
    e = launch_gather_dx<float, int32_t>(plan, m.gather, reinterpret_cast<const float*>(buf.dx_workspace),
                                         reinterpret_cast<float*>(buf.grad_input), stream);
    if (e != cudaSuccess) return e;
  }
  if (plan.need_weight && plan.dw_mode == DwMode::kWorkspace) {
    e = launch_reduce_splits(plan, buf.dw_workspace, buf.grad_weight, buf.dkb_workspace, buf.grad_kernel_bias, stream);
  }
  return e;
}

}  // namespace

template <typename scalar_t, typename index_t>
cudaError_t launch_forward(const AdaptiveConvShape& s, const ForwardPlan& plan,
                           const scalar_t* input, const scalar_t* weight,
                           const scalar_t* kernel_bias, const scalar_t* bias, scalar_t* output,
                           scalar_t* q_pack, cudaStream_t stream) {
  (void)s;  // the plan holds the geometry
  const FwdCfg& c = plan.cfg;
  if (c.items == 0) return cudaSuccess;
  if (plan.mma) {
    assert((std::is_same<index_t, int32_t>::value) && "the tensor-core forward is planned with 32-bit indices");
    assert((q_pack != nullptr || plan.q_pack_elems == 0) && "the caller allocates the plan's q_pack workspace");
    const auto pack = pick_pack_q_mma<scalar_t>(plan.mma_ks);
    const auto kernel = pick_fwd_mma<scalar_t>(plan.mma_ks, plan.mma_tail, plan.q_last_shared);
    assert(pack != nullptr && kernel != nullptr && "planned a tensor-core forward that is not compiled");
    cudaError_t e = cudaSuccess;
    if (plan.q_pack_elems > 0) {
      ADAPTIVE_CONV_LAUNCH(pack, grid_for(ceil_div(plan.q_pack_elems / 8, kThreads)), kThreads, 0, stream, plan.geom,
                           c, weight, kernel_bias, q_pack);
      e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
    e = prepare_smem(kernel, plan.smem_bytes);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.smem_bytes, stream, plan.geom, c, input, q_pack,
                         bias, output);
    return cudaGetLastError();
  }
  const auto kernel = pick_fwd<scalar_t, index_t>(plan.static_taps, plan.geom.kH);
  cudaError_t e = prepare_smem(kernel, plan.smem_bytes);
  if (e != cudaSuccess) return e;
  ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.smem_bytes, stream, plan.geom, c, input, weight,
                       kernel_bias, bias, output);
  return cudaGetLastError();
}

template <typename scalar_t, typename index_t>
cudaError_t launch_backward(const AdaptiveConvShape& s, const BackwardPlan& plan,
                            const BackwardBuffers<scalar_t>& buf, cudaStream_t stream) {
  if (const MmaBackwardPlan* m = plan.mma_plan()) {
    return launch_backward_mma<scalar_t, index_t>(s, plan, *m, buf, stream);
  }
  using acc_t = typename AccType<scalar_t>::type;
  const ScalarBackwardPlan& sp = *plan.scalar_plan();
  cudaError_t e = cudaSuccess;

  if (plan.need_input && s.N > 0 && s.C > 0) {
    const auto kernel = pick_dx<scalar_t, index_t>(sp.dx_static, plan.geom.kH);
    e = prepare_smem(kernel, sp.dx_smem);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(sp.dx.items), kThreads, sp.dx_smem, stream, plan.geom, sp.dx,
                         buf.grad_output, buf.input, buf.weight, buf.kernel_bias, buf.grad_input, buf.dx_workspace);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (plan.dx_mode == DxMode::kWorkspace) {
      e = launch_gather_dx<acc_t, index_t>(plan, sp.dx, buf.dx_workspace, buf.grad_input, stream);
      if (e != cudaSuccess) return e;
    }
  }

  if (plan.need_weight && s.N > 0 && plan.dw_elems > 0) {
    const auto kernel = pick_dw<scalar_t, index_t>(sp.dw_static, plan.geom.kH);
    e = prepare_smem(kernel, sp.dw_smem);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(sp.dw.items), kThreads, sp.dw_smem, stream, plan.geom, sp.dw,
                         buf.grad_output, buf.input, buf.weight, buf.kernel_bias, buf.grad_weight,
                         buf.grad_kernel_bias, buf.dw_workspace, buf.dkb_workspace);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (plan.dw_mode == DwMode::kWorkspace) {
      e = launch_reduce_splits(plan, buf.dw_workspace, buf.grad_weight, buf.dkb_workspace, buf.grad_kernel_bias,
                               stream);
      if (e != cudaSuccess) return e;
    }
  }
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace adaptive_conv_ext
