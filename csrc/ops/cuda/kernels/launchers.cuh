// Host-side launchers: kernel selection (static tap counts, index width) and launches.
#pragma once

#include "backward_input.cuh"
#include "backward_mma.cuh"
#include "backward_weight.cuh"
#include "forward.cuh"
#include "forward_mma.cuh"

namespace adaptive_conv_ext {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------
// Launchers.

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t align_up(int64_t v, int64_t a) { return ceil_div(v, a) * a; }

inline Geom make_geom(const AdaptiveConvShape& s, int64_t vec) {
  Geom g;
  g.N = static_cast<int>(s.N);
  g.C = static_cast<int>(s.C);
  g.H = static_cast<int>(s.H);
  g.W = static_cast<int>(s.W);
  g.O = static_cast<int>(s.O);
  g.G = static_cast<int>(s.groups);
  g.Cg = static_cast<int>(s.C / s.groups);
  g.Og = static_cast<int>(s.O / s.groups);
  g.kH = static_cast<int>(s.kH);
  g.kW = static_cast<int>(s.kW);
  g.T = static_cast<int>(s.kH * s.kW);
  g.Tp = static_cast<int>(align_up(s.kH * s.kW, vec));
  g.sH = static_cast<int>(s.sH);
  g.sW = static_cast<int>(s.sW);
  g.pH = static_cast<int>(s.pH);
  g.pW = static_cast<int>(s.pW);
  g.dH = static_cast<int>(s.dH);
  g.dW = static_cast<int>(s.dW);
  g.Ho = static_cast<int>(s.Ho);
  g.Wo = static_cast<int>(s.Wo);
  return g;
}

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

template <typename scalar_t, typename index_t>
FwdKernel<scalar_t, index_t> pick_fwd(bool st, int k) {
  // Giant (int64-indexed) problems and float64 (there for accuracy and gradcheck, not
  // speed; its 7x7 bodies would need > 255 registers) use only the generic kernel.
  if constexpr (kStaticVariants<scalar_t, index_t>) {
    if (st && k == 3) return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 3, 3>;
    if (st && k == 5) return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 5, 5>;
    if (st && k == 7) return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 7, 7>;
  }
  return adaptive_conv2d_fwd_kernel<scalar_t, index_t, 0, 0>;
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
  return adaptive_conv2d_fwd_mma_kernel<scalar_t, KS, kTail, false>;
}

template <typename scalar_t>
FwdMmaKernel<scalar_t> pick_fwd_mma(int ks, int tail, bool shared) {
  if constexpr (std::is_same<scalar_t, __half>::value || std::is_same<scalar_t, __nv_bfloat16>::value) {
    if (ks == 1 && tail == 0) return fwd_mma_variant<scalar_t, 1, 0>(shared);
    if (ks == 1 && tail == 1) return fwd_mma_variant<scalar_t, 1, 1>(shared);
    if (ks == 2 && tail == 3) return fwd_mma_variant<scalar_t, 2, 3>(shared);
    if (ks == 4 && tail == 6) return fwd_mma_variant<scalar_t, 4, 6>(shared);
    if (tail >= 0) return nullptr;  // planner bug: no such variant
    if (shared) return nullptr;  // planner bug: the shared tile needs an odd square kernel
    if (ks == 1) return fwd_mma_variant<scalar_t, 1, -1>(false);
    if (ks == 2) return fwd_mma_variant<scalar_t, 2, -1>(false);
    if (ks == 3) return fwd_mma_variant<scalar_t, 3, -1>(false);
    if (ks == 4) return fwd_mma_variant<scalar_t, 4, -1>(false);
  }
  return nullptr;
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
  if constexpr (kStaticVariants<scalar_t, index_t>) {
    if (st && k == 3) return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 3, 3>;
    if (st && k == 5) return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 5, 5>;
    if (st && k == 7) return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 7, 7>;
  }
  return adaptive_conv2d_bwd_input_kernel<scalar_t, index_t, 0, 0>;
}

template <typename scalar_t, typename index_t>
using DwKernel = void (*)(Geom, DwCfg, const scalar_t*, const scalar_t*, const scalar_t*,
                          const scalar_t*, double*, double*, double*, double*);

template <typename scalar_t, typename index_t>
DwKernel<scalar_t, index_t> pick_dw(bool st, int k) {
  // AW (columns per reduction thread) must match plan_backward: 9, 25, 28 and 8 (generic).
  if constexpr (kStaticVariants<scalar_t, index_t>) {
    if (st && k == 3) return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 3, 3, 9>;
    if (st && k == 5) return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 5, 5, 25>;
    if (st && k == 7) return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 7, 7, 28>;
  }
  return adaptive_conv2d_bwd_weight_kernel<scalar_t, index_t, 0, 0, 8>;
}

// The tile fields every kernel configuration shares.
template <typename Cfg>
void set_tile(Cfg* c, const TileGeom& t) {
  c->toh = t.toh;
  c->tow = t.tow;
  c->P = t.toh * t.tow;
  c->bh = t.bh;
  c->bw = t.bw;
  c->box = t.bh * t.bw;
  c->tiles_h = static_cast<int>(t.tiles_h);
  c->tiles_w = static_cast<int>(t.tiles_w);
}

// Deterministic grad_input: the fixed-order gather of the per-tile workspace boxes.
template <typename acc_t, typename index_t>
cudaError_t launch_gather_dx(const AdaptiveConvShape& s, const Geom& g, const DxCfg& c, const acc_t* ws, acc_t* grad_in,
                             cudaStream_t stream) {
  const long long total = static_cast<long long>(s.N) * s.C * s.H * s.W;
  const long long blocks = std::min<long long>(ceil_div(total, kThreads), 65536LL * 16);
  ADAPTIVE_CONV_LAUNCH((adaptive_conv2d_gather_dx_kernel<acc_t, index_t>), grid_for(blocks), kThreads, 0, stream, g, c,
                       ws, grad_in, total);
  return cudaGetLastError();
}

// Deterministic grad_weight / grad_kernel_bias: the per-split partials summed in split order.
inline cudaError_t launch_reduce_splits(const AdaptiveConvShape& s, long long splits, const double* ws_w,
                                        double* grad_w, const double* ws_kb, double* grad_kb, cudaStream_t stream) {
  const long long Eb = static_cast<long long>(s.O) * (s.C / s.groups) * s.kH * s.kW, E = Eb * s.kH * s.kW;
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

// Fused tensor-core backward for K = 16 * ks and the gradients in grads (BwdGrads):
// float16/bfloat16 with 32-bit indices only; the odd square kernels (T = 1, 9, 25, 49) have
// compile-time tile counts of their own.
template <typename scalar_t, typename index_t>
BwdMmaKernel<scalar_t> pick_bwd_mma(int ks, int tail, int grads) {
  constexpr bool k16 = std::is_same<scalar_t, __half>::value || std::is_same<scalar_t, __nv_bfloat16>::value;
  if constexpr (k16 && std::is_same<index_t, int32_t>::value) {
    if (ks == 1 && tail == 0) return bwd_mma_variant<scalar_t, 1, 0>(grads);
    if (ks == 1 && tail == 1) return bwd_mma_variant<scalar_t, 1, 1>(grads);
    if (ks == 2 && tail == 3) return bwd_mma_variant<scalar_t, 2, 3>(grads);
    if (ks == 4 && tail == 6) return bwd_mma_variant<scalar_t, 4, 6>(grads);
    if (tail >= 0) return nullptr;  // planner bug: no such variant
    if (ks == 1) return bwd_mma_variant<scalar_t, 1, -1>(grads);
    if (ks == 2) return bwd_mma_variant<scalar_t, 2, -1>(grads);
    if (ks == 3) return bwd_mma_variant<scalar_t, 3, -1>(grads);
    if (ks == 4) return bwd_mma_variant<scalar_t, 4, -1>(grads);
  }
  return nullptr;
}

// The fused backward, then (deterministic mode) the fixed-order gather of the grad_input
// boxes and the split reduction of grad_weight / grad_kernel_bias.
template <typename scalar_t, typename index_t>
cudaError_t launch_backward_mma(const AdaptiveConvShape& s, const BackwardPlan& plan,
                                const BackwardBuffers<scalar_t>& buf, cudaStream_t stream) {
  if (s.N == 0 || s.C == 0) return cudaSuccess;  // nothing to write (the plan zeroes grad_weight)
  const Geom g = make_geom(s, 4);
  const TileGeom& t = plan.xtile;
  BwdMmaCfg c;
  DxCfg d{};  // the gather kernel's view of the same tiles
  set_tile(&c, t);
  set_tile(&d, t);
  c.Pp = static_cast<int>(align_up(c.P, 16));
  c.oct = plan.m_oct;
  c.rounds = plan.m_rounds;
  c.splits = static_cast<int>(plan.w_splits);
  c.work_items = static_cast<int>(s.N * t.tiles_h * t.tiles_w);
  c.off_q = plan.m_off_q;
  c.off_col = plan.m_off_col;
  c.off_dl = plan.m_off_dl;
  c.off_ds = plan.m_off_ds;
  c.dx_mode = static_cast<int>(plan.dx_mode);
  c.dw_mode = static_cast<int>(plan.dw_mode);
  c.items = static_cast<long long>(s.C) * c.splits;
  const int grads = (plan.need_input ? kBwdInput : 0) | (plan.need_weight ? kBwdWeight : 0);
  const auto kernel = pick_bwd_mma<scalar_t, index_t>(plan.mma_ks, plan.mma_tail, grads);
  if (kernel == nullptr) return cudaErrorInvalidValue;  // planner bug: no such tensor-core kernel
  cudaError_t e = prepare_smem(kernel, plan.m_smem);
  if (e != cudaSuccess) return e;
  ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.m_smem, stream, g, c, buf.grad_output, buf.input,
                       buf.weight, buf.kernel_bias, reinterpret_cast<float*>(buf.grad_input),
                       reinterpret_cast<float*>(buf.dx_workspace), buf.grad_weight, buf.grad_kernel_bias,
                       buf.dw_workspace, buf.dkb_workspace);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if (plan.need_input && plan.dx_mode == DxMode::kWorkspace) {
    e = launch_gather_dx<float, int32_t>(s, g, d, reinterpret_cast<const float*>(buf.dx_workspace),
                                         reinterpret_cast<float*>(buf.grad_input), stream);
    if (e != cudaSuccess) return e;
  }
  if (plan.need_weight && plan.dw_mode == DwMode::kWorkspace) {
    e = launch_reduce_splits(s, plan.w_splits, buf.dw_workspace, buf.grad_weight, buf.dkb_workspace,
                             buf.grad_kernel_bias, stream);
  }
  return e;
}

}  // namespace

template <typename scalar_t, typename index_t>
cudaError_t launch_forward(const AdaptiveConvShape& s, const ForwardPlan& plan,
                           const scalar_t* input, const scalar_t* weight,
                           const scalar_t* kernel_bias, const scalar_t* bias, scalar_t* output,
                           scalar_t* q_pack, cudaStream_t stream) {
  using acc_t = typename AccType<scalar_t>::type;
  const Geom g = make_geom(s, 16 / sizeof(acc_t));
  const TileGeom& t = plan.tile;
  FwdCfg c{};
  c.toh = t.toh;
  c.tow = t.tow;
  c.P = t.toh * t.tow;
  c.bh = t.bh;
  c.bw = t.bw;
  c.box = t.bh * t.bw;
  c.tiles_h = static_cast<int>(t.tiles_h);
  c.tiles_w = static_cast<int>(t.tiles_w);
  c.oct = plan.oct;
  c.n_ot = static_cast<int>(ceil_div(g.Og, plan.oct));
  c.cch = plan.cch;
  c.tt = plan.tt;
  c.off_beta = static_cast<int>(plan.off_beta);
  c.off_box = static_cast<int>(plan.off_box);
  c.off_y = static_cast<int>(plan.off_y);
  c.items = static_cast<long long>(s.N) * s.groups * c.n_ot * t.tiles_h * t.tiles_w;
  if (c.items == 0) return cudaSuccess;
  if (plan.static_taps && !kStaticVariants<scalar_t, index_t>) return cudaErrorInvalidValue;  // planner bug
  if (plan.mma) {
    if (!std::is_same<index_t, int32_t>::value || (q_pack == nullptr && plan.q_pack_elems > 0)) {
      return cudaErrorInvalidValue;  // planner bug, or the caller did not allocate the workspace
    }
    c.q_rows = mma_q_rows(plan.oct, g.T, plan.q_last_shared);
    c.q_shared = plan.q_last_shared ? 1 : 0;
    c.q_rows_m = div_magic(static_cast<unsigned>(c.q_rows));
    c.q_tr_m = div_magic(static_cast<unsigned>(std::max(1, plan.q_last_shared ? g.T - 1 : g.T)));
    const auto pack = pick_pack_q_mma<scalar_t>(plan.mma_ks);
    const auto kernel = pick_fwd_mma<scalar_t>(plan.mma_ks, plan.mma_tail, plan.q_last_shared);
    if (pack == nullptr || kernel == nullptr) return cudaErrorInvalidValue;  // planner bug: no such kernel
    cudaError_t e = cudaSuccess;
    if (plan.q_pack_elems > 0) {
      ADAPTIVE_CONV_LAUNCH(pack, grid_for(ceil_div(plan.q_pack_elems / 8, kThreads)), kThreads, 0, stream, g, c,
                           weight, kernel_bias, q_pack);
      e = cudaGetLastError();
      if (e != cudaSuccess) return e;
    }
    e = prepare_smem(kernel, plan.smem_bytes);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.smem_bytes, stream, g, c, input, q_pack, bias,
                         output);
    return cudaGetLastError();
  }
  const auto kernel = pick_fwd<scalar_t, index_t>(plan.static_taps, g.kH);
  cudaError_t e = prepare_smem(kernel, plan.smem_bytes);
  if (e != cudaSuccess) return e;
  ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.smem_bytes, stream, g, c, input, weight,
                       kernel_bias, bias, output);
  return cudaGetLastError();
}

template <typename scalar_t, typename index_t>
cudaError_t launch_backward(const AdaptiveConvShape& s, const BackwardPlan& plan,
                            const BackwardBuffers<scalar_t>& buf, cudaStream_t stream) {
  if (plan.mma) return launch_backward_mma<scalar_t, index_t>(s, plan, buf, stream);
  using acc_t = typename AccType<scalar_t>::type;
  const Geom g = make_geom(s, 16 / sizeof(acc_t));
  cudaError_t e = cudaSuccess;

  if (plan.need_input && s.N > 0 && s.C > 0) {
    const TileGeom& t = plan.xtile;
    DxCfg c;
    c.toh = t.toh;
    c.tow = t.tow;
    c.P = t.toh * t.tow;
    c.bh = t.bh;
    c.bw = t.bw;
    c.box = t.bh * t.bw;
    c.tiles_h = static_cast<int>(t.tiles_h);
    c.tiles_w = static_cast<int>(t.tiles_w);
    c.oq = plan.x_oq;
    c.tt = plan.x_tt;
    c.off_beta = static_cast<int>(plan.x_off_beta);
    c.off_box = static_cast<int>(plan.x_off_box);
    c.off_dbox = static_cast<int>(plan.x_off_dbox);
    c.off_dxt = static_cast<int>(plan.x_off_dxt);
    c.off_dxp = static_cast<int>(plan.x_off_dxp);
    c.mode = static_cast<int>(plan.dx_mode);
    c.items = static_cast<long long>(s.N) * s.C * t.tiles_h * t.tiles_w;
    if (plan.x_static && !kStaticVariants<scalar_t, index_t>) return cudaErrorInvalidValue;
    const auto kernel = pick_dx<scalar_t, index_t>(plan.x_static, g.kH);
    e = prepare_smem(kernel, plan.x_smem);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.x_smem, stream, g, c, buf.grad_output,
                         buf.input, buf.weight, buf.kernel_bias, buf.grad_input, buf.dx_workspace);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (plan.dx_mode == DxMode::kWorkspace) {
      e = launch_gather_dx<acc_t, index_t>(s, g, c, buf.dx_workspace, buf.grad_input, stream);
      if (e != cudaSuccess) return e;
    }
  }

  const long long E = static_cast<long long>(s.O) * (s.C / s.groups) * s.kH * s.kW * s.kH * s.kW;
  if (plan.need_weight && s.N > 0 && E > 0) {
    const TileGeom& t = plan.wtile;
    DwCfg c;
    c.toh = t.toh;
    c.tow = t.tow;
    c.P = t.toh * t.tow;
    c.bh = t.bh;
    c.bw = t.bw;
    c.box = t.bh * t.bw;
    c.tiles_h = static_cast<int>(t.tiles_h);
    c.tiles_w = static_cast<int>(t.tiles_w);
    c.oq = plan.w_oq;
    c.n_ot = static_cast<int>(ceil_div(g.Og, plan.w_oq));
    c.tt = plan.w_tt;
    c.n_tc = static_cast<int>(ceil_div(g.T, plan.w_tt));
    c.ncg = plan.w_ncg;
    c.jobs = plan.w_jobs;
    c.ks = plan.w_ks;
    c.rs = plan.w_rs;
    c.off_beta = static_cast<int>(plan.w_off_beta);
    c.off_box = static_cast<int>(plan.w_off_box);
    c.off_xcol = static_cast<int>(plan.w_off_xcol);
    c.off_ds = static_cast<int>(plan.w_off_ds);
    c.mode = static_cast<int>(plan.dw_mode);
    c.splits = plan.w_splits;
    c.work_items = static_cast<long long>(s.N) * t.tiles_h * t.tiles_w;
    c.items = static_cast<long long>(c.n_ot) * c.n_tc * s.C * c.splits;
    if (plan.w_static && !kStaticVariants<scalar_t, index_t>) return cudaErrorInvalidValue;
    const auto kernel = pick_dw<scalar_t, index_t>(plan.w_static, g.kH);
    e = prepare_smem(kernel, plan.w_smem);
    if (e != cudaSuccess) return e;
    ADAPTIVE_CONV_LAUNCH(kernel, grid_for(c.items), kThreads, plan.w_smem, stream, g, c, buf.grad_output,
                         buf.input, buf.weight, buf.kernel_bias, buf.grad_weight, buf.grad_kernel_bias,
                         buf.dw_workspace, buf.dkb_workspace);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (plan.dw_mode == DwMode::kWorkspace) {
      e = launch_reduce_splits(s, c.splits, buf.dw_workspace, buf.grad_weight, buf.dkb_workspace,
                               buf.grad_kernel_bias, stream);
      if (e != cudaSuccess) return e;
    }
  }
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace adaptive_conv_ext
