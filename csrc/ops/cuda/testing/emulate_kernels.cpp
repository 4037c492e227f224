// Runs the CUDA kernels of adaptive_conv2d on the CPU, for machines without a GPU.
//
// The kernel source (../kernels/*.cuh and the planner) is compiled as plain C++ on the
// runtime of emu_runtime.h: every CUDA thread of a block is a user-space fiber, __syncthreads
// is a real barrier, the warp-wide PTX instructions of the tensor-core kernels run on their
// CPU models (testing/ptx/emulation.h, fragment layouts unit-tested by test_ptx.cpp), dynamic shared
// memory is one buffer poisoned with NaN before each launch, outputs the plan does not zero
// are poisoned too. Results are compared with a direct float64 evaluation of the SPEC
// formulas on the (rounded) inputs, at the SPEC tolerances; deterministic mode is run twice
// and compared bit for bit.
//
// It checks indexing, tiling, shared-memory layout, fragment layouts, the planner and the
// numerics, not GPU-specific behaviour (warp scheduling, real atomics contention, the exact
// error of the hardware tanh.approx: the scalar 16-bit path uses exact tanhf here, the
// packed tanh of the tensor-core path a pessimistic one-ulp model). Build with
// -fsanitize=thread to have a missing barrier reported as a data race.
//
//   g++ -std=c++20 -O1 -g -pthread -Wno-subobject-linkage -I/usr/local/cuda/include -Icsrc
//       csrc/ops/cuda/testing/emulate_kernels.cpp -o /tmp/emulate
//   /tmp/emulate [quick | mma | mma:<note> | <note>]
#include "ptx/emulation.h"  // the runtime and the PTX instruction models, before the kernels

#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>

namespace emu {
constexpr size_t kSmemBytes = 256 * 1024;
int g_sms = 132;
}  // namespace emu

// --- the code under test ---------------------------------------------------------------
#include "ops/cuda/planner.cu"
#include "ops/cuda/kernels_f32.cu"

namespace adaptive_conv_ext {
namespace cuda {
ADAPTIVE_CONV_INSTANTIATE(double)
ADAPTIVE_CONV_INSTANTIATE(__half)
ADAPTIVE_CONV_INSTANTIATE(__nv_bfloat16)
namespace {
alignas(16) unsigned char smem_raw[emu::kSmemBytes];  // the kernels' extern __shared__ buffer
}
struct RegisterSmem {
  RegisterSmem() {
    emu::g_smem = smem_raw;
    emu::g_smem_size = emu::kSmemBytes;
  }
} register_smem;
}  // namespace cuda
}  // namespace adaptive_conv_ext

// --- CUDA runtime, host side -----------------------------------------------------------
extern "C" {
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int) {
  if (attr == cudaDevAttrMultiProcessorCount) {
    *value = emu::g_sms;
  } else if (attr == cudaDevAttrMaxSharedMemoryPerBlockOptin) {
    *value = emu::g_optin;
  } else if (attr == cudaDevAttrMaxSharedMemoryPerMultiprocessor) {
    *value = emu::g_optin + 1024;
  } else if (attr == cudaDevAttrMaxRegistersPerMultiprocessor) {
    *value = 64 * 1024;
  } else if (attr == cudaDevAttrComputeCapabilityMajor) {
    *value = 9;
  } else if (attr == cudaDevAttrComputeCapabilityMinor) {
    *value = 0;
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaFuncSetAttribute(const void*, enum cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value > emu::g_optin) return cudaErrorInvalidValue;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetLastError(void) { return cudaSuccess; }
const char* CUDARTAPI cudaGetErrorString(cudaError_t) { return "emulated CUDA error"; }
}


// --- reference (SPEC section 1, float64, direct loops) ---------------------------------
using adaptive_conv_ext::AdaptiveConvShape;
namespace cu = adaptive_conv_ext::cuda;

struct Problem {
  AdaptiveConvShape s;
  std::vector<double> x, w, kb, b, go;  // kb/b empty when absent
};

struct Grads {
  std::vector<double> y, dx, dw, dkb;
};

double tap(const Problem& p, int n, int c, int i, int j, int a) {
  const auto& s = p.s;
  const int ah = a / s.kW, aw = a % s.kW;
  const int64_t ih = i * s.sH - s.pH + ah * s.dH, iw = j * s.sW - s.pW + aw * s.dW;
  if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return 0.0;
  return p.x[((n * s.C + c) * s.H + ih) * s.W + iw];
}

Grads reference(const Problem& p) {
  const auto& s = p.s;
  const int T = s.kH * s.kW, Cg = s.C / s.groups, Og = s.O / s.groups;
  Grads r;
  r.y.assign(s.N * s.O * s.Ho * s.Wo, 0.0);
  r.dx.assign(p.x.size(), 0.0);
  r.dw.assign(p.w.size(), 0.0);
  r.dkb.assign(s.O * Cg * T, 0.0);
  std::vector<double> X(T);
  for (int n = 0; n < s.N; ++n)
    for (int o = 0; o < s.O; ++o)
      for (int i = 0; i < s.Ho; ++i)
        for (int j = 0; j < s.Wo; ++j) {
          const int64_t yi = ((n * s.O + o) * s.Ho + i) * s.Wo + j;
          double y = p.b.empty() ? 0.0 : p.b[o];
          const double g = p.go[yi];
          for (int c = 0; c < Cg; ++c) {
            const int ca = (o / Og) * Cg + c;
            for (int a = 0; a < T; ++a) X[a] = tap(p, n, ca, i, j, a);
            for (int t = 0; t < T; ++t) {
              const int64_t row = ((int64_t(o) * Cg + c) * T + t);
              double sg = p.kb.empty() ? 0.0 : p.kb[row];
              for (int a = 0; a < T; ++a) sg += p.w[row * T + a] * X[a];
              const double k = std::tanh(sg);
              y += k * X[t];
              const double ds = g * X[t] * (1 - k * k);
              r.dkb[row] += ds;
              for (int a = 0; a < T; ++a) r.dw[row * T + a] += ds * X[a];
              // dX scattered back through the padding/stride/dilation map
              auto add = [&](int a, double v) {
                const int ah = a / s.kW, aw = a % s.kW;
                const int64_t ih = i * s.sH - s.pH + ah * s.dH, iw = j * s.sW - s.pW + aw * s.dW;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) return;
                r.dx[((n * s.C + ca) * s.H + ih) * s.W + iw] += v;
              };
              add(t, g * k);
              for (int a = 0; a < T; ++a) add(a, ds * p.w[row * T + a]);
            }
          }
          r.y[yi] = y;
        }
  return r;
}

// --- running the CUDA path ---------------------------------------------------------------
// Run the 64-bit-index kernels on small problems too (valid whenever the plan uses only
// generic kernels, whose layouts do not depend on the index width).
bool g_force_int64 = false;

template <typename T>
T from_double(double v);
template <>
float from_double<float>(double v) { return static_cast<float>(v); }
template <>
double from_double<double>(double v) { return v; }
template <>
__half from_double<__half>(double v) { return __float2half_rn(static_cast<float>(v)); }
template <>
__nv_bfloat16 from_double<__nv_bfloat16>(double v) { return __float2bfloat16_rn(static_cast<float>(v)); }
double to_double(float v) { return v; }
double to_double(double v) { return v; }
double to_double(__half v) { return __half2float(v); }
double to_double(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  std::vector<T> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = from_double<T>(v[i]);
  return o;
}
template <typename T>
void round_trip(std::vector<double>& v) {  // the reference sees what the kernels see
  for (auto& e : v) e = to_double(from_double<T>(e));
}

template <typename T>
cu::DType dtype_of();
template <>
cu::DType dtype_of<float>() { return cu::DType::kFloat32; }
template <>
cu::DType dtype_of<double>() { return cu::DType::kFloat64; }
template <>
cu::DType dtype_of<__half>() { return cu::DType::kFloat16; }
template <>
cu::DType dtype_of<__nv_bfloat16>() { return cu::DType::kBFloat16; }

template <typename T>
const char* name_of();
template <>
const char* name_of<float>() { return "f32"; }
template <>
const char* name_of<double>() { return "f64"; }
template <>
const char* name_of<__half>() { return "f16"; }
template <>
const char* name_of<__nv_bfloat16>() { return "bf16"; }

template <typename A>
std::vector<A> poisoned(size_t n, bool zero) {
  return std::vector<A>(n, zero ? A(0) : A(std::nan("")));
}

// What to run: the planner's choice or the scalar forward forced (16-bit types compare the
// tensor-core forward with it), and whether to run the backward too.
struct Run {
  bool allow_mma = true;
  bool fwd_only = false;
  bool allow_bwd_mma = true;  // the fused tensor-core backward when the planner picks it
  bool need_input = true, need_weight = true;  // the gradients asked of the backward
};

// The emulated device, as the glue's query_device_limits reports it (through the stubs above).
cu::DeviceLimits emulated_limits() {
  cu::DeviceLimits l;
  std::string why;
  if (!cu::query_device_limits(&l, &why)) {
    std::printf("query_device_limits failed: %s\n", why.c_str());
    std::exit(1);
  }
  return l;
}

// What an unrequested gradient's buffer holds before and after the backward: any write shows.
constexpr double kUntouched = 1234.5;
bool g_last_bwd_mma = false;  // whether the last run_cuda's backward plan was the fused mma one

template <typename T>
Grads run_cuda(const Problem& p, bool det, std::string* plan_info, const Run& run = Run(), bool* used_mma = nullptr) {
  using acc_t = typename cu::AccType<T>::type;
  const auto& s = p.s;
  const auto x = cast<T>(p.x), w = cast<T>(p.w), kb = cast<T>(p.kb), b = cast<T>(p.b), go = cast<T>(p.go);
  Grads r;
  std::string why;
  cu::ForwardPlan fp;
  const cu::DeviceLimits limits = emulated_limits();
  if (!cu::plan_forward(dtype_of<T>(), s, limits, &fp, &why, run.allow_mma)) {
    std::printf("plan_forward failed: %s\n", why.c_str());
    std::exit(1);
  }
  if (g_force_int64 && !fp.static_taps) fp.use_int64 = true;
  std::vector<T> y(s.N * s.O * s.Ho * s.Wo, from_double<T>(std::nan("")));
  // The packed-Q workspace starts as NaN: the pack kernel must write every element it reads.
  std::vector<T> qpack(fp.q_pack_elems, from_double<T>(std::nan("")));
  T* const qp = qpack.empty() ? nullptr : qpack.data();
  cudaError_t e;
  if (fp.use_int64) {
    e = cu::launch_forward<T, int64_t>(s, fp, x.data(), w.data(), kb.empty() ? nullptr : kb.data(),
                                       b.empty() ? nullptr : b.data(), y.data(), qp, nullptr);
  } else {
    e = cu::launch_forward<T, int32_t>(s, fp, x.data(), w.data(), kb.empty() ? nullptr : kb.data(),
                                       b.empty() ? nullptr : b.data(), y.data(), qp, nullptr);
  }
  if (e != cudaSuccess) {
    std::printf("launch_forward failed\n");
    std::exit(1);
  }
  for (auto v : y) r.y.push_back(to_double(v));
  if (used_mma != nullptr) *used_mma = fp.mma;
  if (run.fwd_only) {
    char info[256];
    std::snprintf(info, sizeof info, "fwd[%s tile %dx%d oct %d cch %d %dB]",
                  fp.mma ? (fp.mma_ks == 1 ? "mma k16" : fp.mma_ks == 2 ? "mma k32" : fp.mma_ks == 3 ? "mma k48" : "mma k64")
                         : (fp.static_taps ? "static" : "generic"),
                  fp.cfg.toh, fp.cfg.tow, fp.cfg.oct, fp.cfg.cch, fp.smem_bytes);
    *plan_info = info;
    return r;
  }

  cu::BackwardPlan bp;
  if (!cu::plan_backward(dtype_of<T>(), s, run.need_input, run.need_weight, det, limits, &bp, &why,
                         run.allow_bwd_mma)) {
    std::printf("plan_backward failed: %s\n", why.c_str());
    std::exit(1);
  }
  g_last_bwd_mma = bp.mma();
  const cu::ScalarBackwardPlan* sbp = bp.scalar_plan();
  if (g_force_int64 && sbp != nullptr && !sbp->dx_static && !sbp->dw_static) bp.use_int64 = true;
  const int64_t T_ = s.kH * s.kW, Cg = s.C / s.groups;
  // Unrequested gradients: no workspace planned, and their buffers (which the glue leaves
  // null) hold kUntouched, which the caller checks afterwards.
  if ((!run.need_input && bp.dx_ws_elems != 0) || (!run.need_weight && (bp.dw_ws_elems != 0 || bp.dkb_ws_elems != 0))) {
    std::printf("plan_backward planned a workspace for an unrequested gradient\n");
    std::exit(1);
  }
  auto gi = run.need_input ? poisoned<acc_t>(p.x.size(), bp.dx_zero_init) : std::vector<acc_t>(p.x.size(), acc_t(kUntouched));
  auto gw = run.need_weight ? poisoned<double>(p.w.size(), bp.dw_zero_init) : std::vector<double>(p.w.size(), kUntouched);
  auto gkb = run.need_weight ? poisoned<double>(s.O * Cg * T_, bp.dw_zero_init)
                             : std::vector<double>(s.O * Cg * T_, kUntouched);
  auto dxws = poisoned<acc_t>(bp.dx_ws_elems, false);
  auto dwws = poisoned<double>(bp.dw_ws_elems, false);
  auto dkbws = poisoned<double>(bp.dkb_ws_elems, false);
  cu::BackwardBuffers<T> buf;
  buf.grad_output = go.data();
  buf.input = x.data();
  buf.weight = w.data();
  buf.kernel_bias = kb.empty() ? nullptr : kb.data();
  buf.grad_input = gi.data();
  buf.grad_weight = gw.data();
  buf.grad_kernel_bias = gkb.data();
  buf.dx_workspace = dxws.empty() ? nullptr : dxws.data();
  buf.dw_workspace = dwws.empty() ? nullptr : dwws.data();
  buf.dkb_workspace = dkbws.empty() ? nullptr : dkbws.data();
  e = bp.use_int64 ? cu::launch_backward<T, int64_t>(s, bp, buf, nullptr)
                   : cu::launch_backward<T, int32_t>(s, bp, buf, nullptr);
  if (e != cudaSuccess) {
    std::printf("launch_backward failed\n");
    std::exit(1);
  }
  // What the binding does: round the accumulators to the input dtype. Unrequested gradients
  // come back as they are (kUntouched unless the backward wrote them).
  for (auto v : gi) r.dx.push_back(run.need_input ? to_double(from_double<T>(v)) : to_double(v));
  for (auto v : gw) r.dw.push_back(run.need_weight ? to_double(from_double<T>(v)) : v);
  for (auto v : gkb) r.dkb.push_back(run.need_weight ? to_double(from_double<T>(v)) : v);

  char info[512];
  if (const cu::MmaBackwardPlan* m = bp.mma_plan()) {
    std::snprintf(info, sizeof info,
                  "fwd[%stile %dx%d oct %d cch %d %dB] bwd[mma%s k%d tile %dx%d oct %d rounds %d splits %lld dx mode %d "
                  "dw mode %d %dB]",
                  fp.mma ? "mma " : "", fp.cfg.toh, fp.cfg.tow, fp.cfg.oct, fp.cfg.cch, fp.smem_bytes,
                  bp.need_input ? (bp.need_weight ? "" : " input-only") : " weight-only", 16 * m->ks,
                  m->cfg.toh, m->cfg.tow, m->cfg.oct, m->cfg.rounds, static_cast<long long>(bp.w_splits),
                  bp.need_input ? static_cast<int>(bp.dx_mode) : -1, bp.need_weight ? static_cast<int>(bp.dw_mode) : -1,
                  m->smem);
    *plan_info = info;
    return r;
  }
  std::snprintf(info, sizeof info,
                "fwd[%stile %dx%d oct %d cch %d tt %d %s %dB] dx[tile %dx%d oq %d tt %d %s mode %d %dB] "
                "dw[tile %dx%d oq %d tt %d aw %d ks %d splits %lld %s mode %d %dB]",
                fp.mma ? "mma " : "", fp.cfg.toh, fp.cfg.tow, fp.cfg.oct, fp.cfg.cch, fp.cfg.tt,
                fp.static_taps ? "static" : "generic", fp.smem_bytes, sbp->dx.toh, sbp->dx.tow, sbp->dx.oq, sbp->dx.tt,
                sbp->dx_static ? "static" : "generic", static_cast<int>(bp.dx_mode), sbp->dx_smem, sbp->dw.toh,
                sbp->dw.tow, sbp->dw.oq, sbp->dw.tt, sbp->dw_aw, sbp->dw.ks, static_cast<long long>(bp.w_splits),
                sbp->dw_static ? "static" : "generic", static_cast<int>(bp.dw_mode), sbp->dw_smem);
  *plan_info = info;
  return r;
}

double rel_err(const std::vector<double>& a, const std::vector<double>& ref, bool* finite) {
  double num = 0, den = 0;
  *finite = true;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) *finite = false;
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Case {
  int N, C, O, H, W, kH, kW, sH, sW, pH, pW, dH, dW, groups;
  bool kb, bias;
  int sms = 132, optin = 227 * 1024;
  const char* note = "";
};

AdaptiveConvShape make_shape(const Case& c) {
  AdaptiveConvShape s{};
  s.N = c.N;
  s.C = c.C;
  s.H = c.H;
  s.W = c.W;
  s.O = c.O;
  s.groups = c.groups;
  s.kH = c.kH;
  s.kW = c.kW;
  s.sH = c.sH;
  s.sW = c.sW;
  s.pH = c.pH;
  s.pW = c.pW;
  s.dH = c.dH;
  s.dW = c.dW;
  s.Ho = (s.H + 2 * s.pH - s.dH * (s.kH - 1) - 1) / s.sH + 1;
  s.Wo = (s.W + 2 * s.pW - s.dW * (s.kW - 1) - 1) / s.sW + 1;
  return s;
}

int g_failures = 0;

// Worst relative error per "dtype gradient" over the fused-backward cases (reported at the end).
std::map<std::string, double> g_worst;
bool g_track_worst = false;

// expect_mma: 1 / 0 = the plan must (not) use the tensor-core forward, -1 = either;
// expect_bwd_mma: the same for the fused tensor-core backward.
template <typename T>
void check_case(const Case& c, bool det, double tol, unsigned seed, const Run& run = Run(), int expect_mma = -1,
                int expect_bwd_mma = -1) {
  emu::g_sms = c.sms;
  emu::g_optin = c.optin;
  Problem p;
  p.s = make_shape(c);
  const auto& s = p.s;
  const int T_ = c.kH * c.kW, Cg = c.C / c.groups;
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  auto fill = [&](std::vector<double>& v, size_t n, double scale) {
    v.resize(n);
    for (auto& e : v) e = nd(rng) * scale;
  };
  fill(p.x, s.N * s.C * s.H * s.W, 1.0);
  fill(p.w, s.O * Cg * T_ * T_, 1.0 / std::sqrt(double(T_)));
  if (c.kb) fill(p.kb, s.O * Cg * T_, 0.5);
  if (c.bias) fill(p.b, s.O, 0.5);
  fill(p.go, s.N * s.O * s.Ho * s.Wo, 1.0);
  for (auto* v : {&p.x, &p.w, &p.kb, &p.b, &p.go}) round_trip<T>(*v);

  std::string info;
  bool used_mma = false;
  const Grads got = run_cuda<T>(p, det, &info, run, &used_mma);
  const Grads ref = reference(p);
  bool ok = true;
  char line[1024];
  int off = std::snprintf(line, sizeof line, "%-5s%s N%d C%d O%d %dx%d k%dx%d s%d,%d p%d,%d d%d,%d g%d%s%s%s optin=%dK %s",
                          name_of<T>(), g_force_int64 ? "/i64" : "", c.N, c.C, c.O, c.H, c.W, c.kH, c.kW, c.sH, c.sW, c.pH, c.pW, c.dH,
                          c.dW, c.groups, c.kb ? " kb" : "", c.bias ? " bias" : "", det ? " det" : "",
                          c.optin / 1024, c.note);
  const char* names[] = {"y", "dx", "dw", "dkb"};
  const std::vector<double>* gv[] = {&got.y, &got.dx, &got.dw, &got.dkb};
  const std::vector<double>* rv[] = {&ref.y, &ref.dx, &ref.dw, &ref.dkb};
  if (expect_mma >= 0 && used_mma != (expect_mma == 1)) {
    ok = false;
    off += std::snprintf(line + off, sizeof line - off, " PLAN: mma expected %s", expect_mma ? "yes" : "no");
  }
  if (!run.fwd_only && expect_bwd_mma >= 0 && g_last_bwd_mma != (expect_bwd_mma == 1)) {
    ok = false;
    off += std::snprintf(line + off, sizeof line - off, " PLAN: fused mma backward expected %s",
                         expect_bwd_mma ? "yes" : "no");
  }
  for (int k = 0; k < (run.fwd_only ? 1 : 4); ++k) {
    if ((k == 1 && !run.need_input) || (k >= 2 && !run.need_weight)) {  // unrequested: must be untouched
      const bool untouched = std::all_of(gv[k]->begin(), gv[k]->end(), [](double v) { return v == kUntouched; });
      ok = ok && untouched;
      off += std::snprintf(line + off, sizeof line - off, " %s=%s", names[k], untouched ? "untouched" : "WRITTEN");
      continue;
    }
    bool finite;
    const double err = rel_err(*gv[k], *rv[k], &finite);
    const bool good = finite && err <= tol;
    ok = ok && good;
    if (g_track_worst && g_last_bwd_mma) {
      const char* grads = run.need_input ? (run.need_weight ? "" : " input-only") : " weight-only";
      double& worst = g_worst[std::string(name_of<T>()) + grads + " " + names[k]];
      worst = std::max(worst, finite ? err : INFINITY);
    }
    off += std::snprintf(line + off, sizeof line - off, " %s=%.1e%s", names[k], err, finite ? "" : "(NaN!)");
  }
  if (det) {  // bitwise reproducibility of the gradients
    std::string info2;
    const Grads again = run_cuda<T>(p, det, &info2, run);
    const bool same = std::memcmp(again.dx.data(), got.dx.data(), got.dx.size() * 8) == 0 &&
                      std::memcmp(again.dw.data(), got.dw.data(), got.dw.size() * 8) == 0 &&
                      std::memcmp(again.dkb.data(), got.dkb.data(), got.dkb.size() * 8) == 0;
    ok = ok && same;
    off += std::snprintf(line + off, sizeof line - off, " bitwise=%s", same ? "yes" : "NO");
  }
  std::printf("%s %s\n    %s\n", ok ? "ok  " : "FAIL", line, info.c_str());
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

// The tensor-core forward (float16/bfloat16) on shapes that its tiles cover exactly and on
// shapes they do not (channel counts off multiples of 8, tiny and odd images, rectangular
// kernels, batch 0), each against the float64 reference; kernels with T + 1 > 64 must fall
// back to the scalar forward. Forward only: the backward is the scalar one either way.
// N C O H W kH kW sH sW pH pW dH dW g kb bias [sms optin note]
const std::vector<Case> kMmaCases = {
    {2, 3, 5, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "3x3 small"},
    {1, 8, 8, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "3x3 C8 O8"},
    {1, 16, 16, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false, 132, 227 * 1024, "3x3 C16 O16 (two oct)"},
    {1, 20, 6, 10, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "3x3 C20 (two channel rounds)"},
    {1, 5, 12, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, true, 132, 227 * 1024, "3x3 O12"},
    {2, 3, 4, 15, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, false, true, 132, 227 * 1024, "stride 2"},
    {1, 3, 4, 14, 13, 3, 3, 2, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "stride 2x1"},
    {1, 2, 3, 37, 35, 3, 3, 3, 3, 2, 1, 1, 1, 1, true, false, 132, 227 * 1024, "stride 3"},
    {1, 4, 4, 17, 14, 3, 3, 1, 1, 2, 2, 2, 2, 1, true, false, 132, 227 * 1024, "dilation 2"},
    {1, 3, 3, 12, 19, 3, 3, 1, 1, 1, 3, 1, 3, 1, true, true, 132, 227 * 1024, "dilation 1x3"},
    {2, 4, 6, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1, 2, true, true, 132, 227 * 1024, "groups 2"},
    {1, 6, 9, 10, 10, 3, 3, 1, 1, 1, 1, 1, 1, 3, true, true, 132, 227 * 1024, "groups 3"},
    {2, 6, 6, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1, 6, true, true, 132, 227 * 1024, "depthwise 3x3"},
    {1, 5, 5, 13, 11, 5, 5, 1, 1, 2, 2, 1, 1, 5, true, true, 132, 227 * 1024, "depthwise 5x5"},
    {1, 4, 4, 16, 15, 7, 7, 1, 1, 3, 3, 1, 1, 4, true, false, 132, 227 * 1024, "depthwise 7x7"},
    {1, 4, 8, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 4, true, true, 132, 227 * 1024, "depthwise multiplier 2"},
    {2, 3, 3, 7, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, true, 132, 227 * 1024, "1x1"},
    {1, 5, 7, 9, 8, 1, 1, 2, 2, 0, 0, 1, 1, 1, true, false, 132, 227 * 1024, "1x1 stride 2"},
    {2, 1, 6, 14, 14, 5, 5, 1, 1, 2, 2, 1, 1, 1, true, true, 132, 227 * 1024, "5x5 lenet-like"},
    {1, 2, 3, 17, 16, 5, 5, 2, 2, 2, 2, 2, 2, 1, true, true, 132, 227 * 1024, "5x5 stride 2 dilation 2"},
    {1, 2, 3, 16, 16, 7, 7, 1, 1, 3, 3, 1, 1, 1, true, true, 132, 227 * 1024, "7x7"},
    {1, 3, 10, 11, 12, 7, 7, 1, 1, 3, 3, 1, 1, 1, false, true, 132, 227 * 1024, "7x7 O10"},
    {1, 2, 3, 16, 16, 7, 7, 1, 1, 3, 3, 1, 1, 1, true, true, 132, 48 * 1024, "7x7 at 48K"},
    {2, 3, 4, 11, 13, 2, 3, 1, 2, 0, 1, 1, 1, 1, true, true, 132, 227 * 1024, "rect 2x3"},
    {1, 3, 4, 12, 14, 3, 5, 1, 1, 1, 2, 1, 1, 1, true, true, 132, 227 * 1024, "rect 3x5"},
    {1, 2, 3, 9, 20, 1, 7, 1, 1, 0, 3, 1, 1, 1, true, true, 132, 227 * 1024, "rect 1x7"},
    {1, 2, 3, 20, 9, 7, 1, 1, 1, 3, 0, 1, 1, 1, true, false, 132, 227 * 1024, "rect 7x1"},
    {1, 2, 2, 10, 15, 3, 7, 1, 1, 1, 3, 1, 1, 1, true, true, 132, 227 * 1024, "rect 3x7"},
    {1, 2, 2, 12, 12, 4, 4, 2, 2, 1, 1, 1, 1, 1, false, false, 132, 227 * 1024, "even 4x4"},
    {1, 2, 3, 11, 11, 6, 6, 1, 1, 2, 3, 1, 1, 1, true, true, 132, 227 * 1024, "even 6x6"},
    {1, 3, 3, 8, 9, 2, 2, 1, 1, 0, 0, 1, 1, 1, true, true, 132, 227 * 1024, "2x2"},
    {1, 3, 5, 13, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "odd image 13x7"},
    {2, 2, 3, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "tiny 1x1 image"},
    {1, 3, 2, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "tiny 2x3 image"},
    {1, 2, 2, 3, 3, 5, 5, 1, 1, 2, 2, 1, 1, 1, true, true, 132, 227 * 1024, "image smaller than kernel"},
    {1, 2, 3, 37, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "tall 37x3"},
    {1, 2, 3, 3, 70, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "wide 3x70"},
    {2, 2, 3, 40, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false, 132, 227 * 1024, "many tiles 40x37"},
    {0, 3, 4, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "batch 0"},
    {1, 0, 9, 6, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "C0: no input channels"},
    {1, 3, 4, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, false, 132, 227 * 1024, "no biases"},
    {1, 7, 3, 10, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "C7 O3"},
    {1, 1, 1, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "C1 O1"},
    {3, 2, 9, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "O9 (oct 8 + 1)"},
    {1, 1, 2, 40, 40, 3, 3, 1, 1, 30, 30, 30, 30, 1, true, false, 132, 99 * 1024, "huge dilation"},
    {1, 3, 8, 12, 12, 5, 5, 1, 1, 2, 2, 1, 1, 1, true, true, 132, 227 * 1024, "5x5 O8 (full block: FMA-pipe tanh)"},
    {1, 5, 16, 9, 10, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, false, 132, 227 * 1024, "1x1 O16 (full blocks)"},
    {1, 4, 5, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "tile 28x4: 28-wide image"},
    {1, 2, 2, 10, 24, 5, 5, 1, 1, 2, 2, 1, 1, 1, true, true, 132, 227 * 1024, "tile 24x5: 120 pixels"},
    {1, 2, 2, 28, 28, 7, 7, 1, 1, 3, 3, 1, 1, 2, true, false, 132, 227 * 1024, "tile 28x4 depthwise 7x7"},
    {1, 1, 2, 6, 300, 3, 3, 1, 1, 1, 150, 1, 150, 1, true, true, 132, 227 * 1024, "box wider than 256: scalar"},
    {1, 2, 2, 12, 12, 8, 8, 1, 1, 3, 4, 1, 1, 1, true, true, 132, 227 * 1024, "8x8: T+1 > 64, scalar"},
    {1, 1, 1, 13, 13, 11, 11, 1, 1, 5, 5, 1, 1, 1, true, true, 132, 48 * 1024, "11x11: scalar"},
};

void run_mma_cases(const std::string& arg) {
  int n = 0;
  for (const Case& c : kMmaCases) {
    if (arg != "mma" && std::string(c.note).find(arg.substr(4)) == std::string::npos) continue;
    const bool scalar = std::string(c.note).find("scalar") != std::string::npos;  // cases the planner must not give it
    const int expect = c.kH * c.kW + 1 <= 64 && !scalar ? 1 : 0;
    Run run;
    run.fwd_only = true;
    check_case<__half>(c, false, 5e-3, 10 + n, run, expect);
    check_case<__nv_bfloat16>(c, false, 2e-2, 20 + n, run, expect);
    ++n;
  }
  // Planner only: float32/float64 never take the tensor-core kernel, nor do problems that
  // need 64-bit indices.
  Case big = kMmaCases[1];
  big.N = 1 << 20;  // 2^20 * 8 * 16 * 16 = 2^31 input elements
  const AdaptiveConvShape bs = make_shape(big), small = make_shape(kMmaCases[1]);
  cu::ForwardPlan fp;
  std::string why;
  struct Expect {
    cu::DType dt;
    const AdaptiveConvShape* s;
    bool allow, mma;
  };
  const Expect expects[] = {{cu::DType::kFloat16, &bs, true, false},     {cu::DType::kFloat32, &small, true, false},
                            {cu::DType::kFloat64, &small, true, false},    {cu::DType::kBFloat16, &small, false, false},
                            {cu::DType::kBFloat16, &small, true, true},    {cu::DType::kFloat16, &small, true, true}};
  bool ok = true;
  for (const Expect& e : expects) {
    const bool planned = cu::plan_forward(e.dt, *e.s, emulated_limits(), &fp, &why, e.allow);
    if (!planned || fp.mma != e.mma || (e.s == &bs && !fp.use_int64)) {
      std::printf("    planner: dtype %d, %s shape, allow_mma %d: planned %d mma %d int64 %d (%s)\n",
                  static_cast<int>(e.dt), e.s == &bs ? "giant" : "small", e.allow, planned, fp.mma, fp.use_int64,
                  why.c_str());
      ok = false;
    }
  }
  // Below sm_80 (no mma.sync m16n8k16 for f16/bf16) neither tensor-core kernel is planned.
  cu::DeviceLimits turing = emulated_limits();
  turing.arch = 75;
  cu::BackwardPlan bp;
  if (!cu::plan_forward(cu::DType::kFloat16, small, turing, &fp, &why) || fp.mma ||
      !cu::plan_backward(cu::DType::kBFloat16, small, true, true, false, turing, &bp, &why) || bp.mma()) {
    std::printf("    planner: sm_75 got a tensor-core plan or none (%s)\n", why.c_str());
    ok = false;
  }
  std::printf("%s planner: tensor-core kernels only for 16-bit, 32-bit-indexed problems on sm_80+\n",
              ok ? "ok  " : "FAIL");
  if (!ok) ++g_failures;
}

// peel() (kernels/common.cuh) against 64-bit / and %: its long-division path for indices past
// 2^31 - 1 runs only on problems too big for the emulated cases.
void check_peel() {
  const long long rs[] = {0, 1, 0x7fffffffLL, 0x80000000LL, 0xffffffffLL, 0x100000000LL, 0x123456789abcdLL,
                          (1LL << 62) + 12345, 0x7fffffffffffffffLL};
  const int ds[] = {1, 2, 3, 7, 255, 256, 65537, 0x7ffffffe, 0x7fffffff};
  int bad = 0;
  for (long long r0 : rs)
    for (int d : ds) {
      long long r = r0;
      const int q = adaptive_conv_ext::cuda::peel(r, d);
      if (q != r0 % d || r != r0 / d) ++bad;
    }
  if (bad) std::printf("FAIL peel: %d of %zu cases wrong\n", bad, std::size(rs) * std::size(ds));
  g_failures += bad;
}

// When no plan fits, the planners say so with a reason that names the shape (the glue raises
// it as a RuntimeError); the launchers have no error path of their own for it. A 3x3 kernel
// dilated by 20000 has an input box of 40001 x 40001 cells for even a 1x1 tile.
void check_refusals() {
  const Case c{1, 1, 1, 8, 8, 3, 3, 1, 1, 20000, 20000, 20000, 20000, 1, true, false, 132, 48 * 1024, "refused"};
  const AdaptiveConvShape s = make_shape(c);
  int bad = 0;
  for (const cu::DType dt : {cu::DType::kFloat32, cu::DType::kFloat16}) {
    std::string why;
    cu::ForwardPlan fp;
    if (cu::plan_forward(dt, s, emulated_limits(), &fp, &why) || why.find("input 1 x 1 x 8 x 8") == std::string::npos) {
      std::printf("    plan_forward: planned %d, reason \"%s\"\n", why.empty(), why.c_str());
      ++bad;
    }
    for (const bool ni : {true, false}) {
      why.clear();
      cu::BackwardPlan bp;
      if (cu::plan_backward(dt, s, ni, !ni, false, emulated_limits(), &bp, &why) ||
          why.find("dilation 20000 x 20000") == std::string::npos) {
        std::printf("    plan_backward: planned %d, reason \"%s\"\n", why.empty(), why.c_str());
        ++bad;
      }
    }
  }
  std::printf("%s planner: no plan fits -> false and a reason naming the shape\n", bad ? "FAIL" : "ok  ");
  g_failures += bad;
}

// The fused tensor-core backward (float16/bfloat16) on the same shapes as the forward:
// forward and all three gradients against the float64 reference, every case also in
// deterministic mode (run twice, bitwise equal), on a GPU model with few SMs as well (more
// splits, so the workspaces and their fixed-order reductions run); kernels with T + 1 > 64
// must fall back to the scalar backward. Every case also runs the weight-only variant (a
// first layer) and the input-only one (a frozen generator), one per dtype, in the other
// reduction mode: the requested gradients against the reference, the others untouched.
void run_bwd_mma_cases(const std::string& arg) {
  g_track_worst = true;
  int n = 0;
  for (Case c : kMmaCases) {
    if (arg != "bwdmma" && std::string(c.note).find(arg.substr(7)) == std::string::npos) continue;
    const int expect = c.kH * c.kW + 1 <= 64 && c.C > 0 ? 1 : 0;  // no input channels: nothing to fuse
    const bool det = n % 2 == 0;  // alternate: both modes run on every kind of shape
    // A small GPU: fewer splits, so fewer emulated blocks; every 4th case keeps 132 SMs
    // (many splits: the workspaces and the atomics paths run).
    if (n % 4 != 1) c.sms = 8;
    check_case<__half>(c, det, 5e-3, 30 + n, Run(), -1, expect);
    check_case<__nv_bfloat16>(c, !det, 2e-2, 40 + n, Run(), -1, expect);
    Run weight_only, input_only;
    weight_only.need_input = false;
    input_only.need_weight = false;
    check_case<__half>(c, !det, 5e-3, 50 + n, n % 2 ? input_only : weight_only, -1, expect);
    check_case<__nv_bfloat16>(c, det, 2e-2, 60 + n, n % 2 ? weight_only : input_only, -1, expect);
    ++n;
  }
  g_track_worst = false;
  std::printf("worst relative error of the fused backward cases:");
  for (const auto& [k, v] : g_worst) std::printf(" %s=%.1e", k.c_str(), v);
  std::printf("\n");
}

// --- "plan": the planner's decisions as JSON, for the static model ----------------------
// One request per stdin line, `key=value` words: dtype (f16 bf16 f32 f64), grads (none: the
// forward; input, weight or both: the backward), det, the device (sms, optin, per_sm, arch)
// and the shape (N C O H W k pad stride dilation groups, square). One JSON object per line
// out: the kernels the launchers will run, by the names benchmarks/static_model.py gives the
// SASS, and the plan's fields.
std::string type_name(cu::DType t) {
  switch (t) {
    case cu::DType::kFloat16: return "half";
    case cu::DType::kBFloat16: return "bf16";
    case cu::DType::kFloat32: return "float";
    case cu::DType::kFloat64: return "double";
  }
  return "?";
}

template <typename Cfg>  // the tile fields of a kernel configuration
std::string tile_json(const Cfg& t) {
  char b[160];
  std::snprintf(b, sizeof b, "{\"toh\": %d, \"tow\": %d, \"bh\": %d, \"bw\": %d, \"tiles_h\": %lld, \"tiles_w\": %lld}",
                t.toh, t.tow, t.bh, t.bw, static_cast<long long>(t.tiles_h), static_cast<long long>(t.tiles_w));
  return b;
}

std::string plan_request(const std::string& line) {
  std::map<std::string, std::string> kv;
  std::istringstream in(line);
  for (std::string w; in >> w;) {
    const size_t eq = w.find('=');
    if (eq == std::string::npos) return "{\"error\": \"expected key=value, got " + w + "\"}";
    kv[w.substr(0, eq)] = w.substr(eq + 1);
  }
  auto num = [&](const char* k, long long dflt) { return kv.count(k) ? std::stoll(kv[k]) : dflt; };
  const std::map<std::string, cu::DType> dtypes = {{"f16", cu::DType::kFloat16}, {"bf16", cu::DType::kBFloat16},
                                                   {"f32", cu::DType::kFloat32}, {"f64", cu::DType::kFloat64}};
  if (!dtypes.count(kv["dtype"])) return "{\"error\": \"dtype must be f16, bf16, f32 or f64\"}";
  const cu::DType dt = dtypes.at(kv["dtype"]);
  cu::DeviceLimits lim;
  lim.sms = static_cast<int>(num("sms", 132));
  lim.smem_optin = num("optin", 227 * 1024);
  lim.smem_per_sm = num("per_sm", lim.smem_optin + 1024);
  lim.regs_per_sm = static_cast<int>(num("regs", 64 * 1024));
  lim.arch = static_cast<int>(num("arch", 90));
  Case c{};
  c.N = static_cast<int>(num("N", 1));
  c.C = static_cast<int>(num("C", 1));
  c.O = static_cast<int>(num("O", 1));
  c.H = static_cast<int>(num("H", 1));
  c.W = static_cast<int>(num("W", c.H));
  c.kH = c.kW = static_cast<int>(num("k", 3));
  c.pH = c.pW = static_cast<int>(num("pad", 0));
  c.sH = c.sW = static_cast<int>(num("stride", 1));
  c.dH = c.dW = static_cast<int>(num("dilation", 1));
  c.groups = static_cast<int>(num("groups", 1));
  const AdaptiveConvShape s = make_shape(c);
  const std::string t = type_name(dt), grads = kv.count("grads") ? kv["grads"] : "none";
  std::string why, out;
  char b[1024];
  if (grads == "none") {
    cu::ForwardPlan fp;
    if (!cu::plan_forward(dt, s, lim, &fp, &why)) return "{\"error\": \"" + why + "\"}";
    const char* idx = fp.use_int64 ? "long" : "int";
    std::string kernels;
    if (fp.mma) {
      if (fp.q_pack_elems > 0) kernels += "\"pack_q_mma<" + std::to_string(fp.mma_ks) + ", " + t + ">\", ";
      kernels += "\"fwd_mma<" + t + ", " + std::to_string(fp.mma_ks) + ", " + std::to_string(fp.mma_tail) + ", " +
                 (fp.q_last_shared ? "true" : "false") + ">\"";
    } else {
      const int k = fp.static_taps ? static_cast<int>(s.kH) : 0;
      kernels = "\"fwd<" + t + ", " + idx + ", " + std::to_string(k) + ", " + std::to_string(k) + ">\"";
    }
    std::snprintf(b, sizeof b,
                  "{\"pass\": \"forward\", \"kernels\": [%s], \"mma\": %s, \"ks\": %d, \"tail\": %d, \"tile\": %s, "
                  "\"oct\": %d, \"cch\": %d, \"q_last_shared\": %s, \"q_rows\": %d, \"smem\": %d}",
                  kernels.c_str(), fp.mma ? "true" : "false", fp.mma_ks, fp.mma_tail, tile_json(fp.cfg).c_str(),
                  fp.cfg.oct, fp.cfg.cch, fp.q_last_shared ? "true" : "false", fp.mma ? fp.cfg.q_rows : 0, fp.smem_bytes);
    return b;
  }
  if (grads != "input" && grads != "weight" && grads != "both") return "{\"error\": \"grads must be none, input, weight or both\"}";
  const bool ni = grads != "weight", nw = grads != "input";
  cu::BackwardPlan bp;
  if (!cu::plan_backward(dt, s, ni, nw, num("det", 0) != 0, lim, &bp, &why)) return "{\"error\": \"" + why + "\"}";
  const char* idx = bp.use_int64 ? "long" : "int";
  std::vector<std::string> ks;
  const cu::MmaBackwardPlan* m = bp.mma_plan();
  const cu::ScalarBackwardPlan* sp = bp.scalar_plan();
  if (m != nullptr) {
    ks.push_back("bwd_mma<" + t + ", " + std::to_string(m->ks) + ", " + std::to_string(m->tail) + ", " +
                 std::to_string(m->grads) + ">");
  } else {
    const int k = static_cast<int>(s.kH);
    if (ni) {
      const int kk = sp->dx_static ? k : 0;
      ks.push_back("bwd_input<" + t + ", " + idx + ", " + std::to_string(kk) + ", " + std::to_string(kk) + ">");
    }
    if (nw) {
      const int kk = sp->dw_static ? k : 0;
      ks.push_back("bwd_weight<" + t + ", " + idx + ", " + std::to_string(kk) + ", " + std::to_string(kk) + ", " +
                   std::to_string(sp->dw_aw) + ">");
    }
  }
  if (ni && bp.dx_mode == cu::DxMode::kWorkspace) {
    ks.push_back(std::string("gather_dx<") + (dt == cu::DType::kFloat64 ? "double" : "float") + ", " +
                 (m != nullptr ? "int" : idx) + ">");
  }
  if (nw && bp.dw_mode == cu::DwMode::kWorkspace) ks.push_back("reduce_splits");
  std::string kernels;
  for (const auto& k : ks) kernels += (kernels.empty() ? "\"" : ", \"") + k + "\"";
  // The scalar plan's tile: grad_input's when it runs, else grad_weight's.
  const std::string tile = m != nullptr ? tile_json(m->cfg) : ni ? tile_json(sp->dx) : tile_json(sp->dw);
  std::snprintf(b, sizeof b,
                "{\"pass\": \"backward\", \"kernels\": [%s], \"mma\": %s, \"need_input\": %s, \"need_weight\": %s, "
                "\"ks\": %d, \"tail\": %d, \"tile\": %s, \"oct\": %d, \"rounds\": %d, \"smem\": %d, \"splits\": %lld, "
                "\"dx_mode\": %d, \"dw_mode\": %d, \"dx_ws_elems\": %lld, \"dw_ws_elems\": %lld}",
                kernels.c_str(), m != nullptr ? "true" : "false", ni ? "true" : "false", nw ? "true" : "false",
                m != nullptr ? m->ks : 0, m != nullptr ? m->tail : -1, tile.c_str(), m != nullptr ? m->cfg.oct : 1,
                m != nullptr ? m->cfg.rounds : 1,
                m != nullptr ? m->smem : std::max(ni ? sp->dx_smem : 0, nw ? sp->dw_smem : 0),
                static_cast<long long>(bp.w_splits), ni ? static_cast<int>(bp.dx_mode) : -1,
                nw ? static_cast<int>(bp.dw_mode) : -1, static_cast<long long>(bp.dx_ws_elems),
                static_cast<long long>(bp.dw_ws_elems));
  return b;
}

int main(int argc, char** argv) {
  // Argument: nothing (all cases), "quick" (three float32/float64 cases) or a substring of a
  // case's note (only those cases).
  const std::string arg = argc > 1 ? argv[1] : "";
  if (arg == "plan") {
    for (std::string line; std::getline(std::cin, line);) {
      if (!line.empty()) std::printf("%s\n", plan_request(line).c_str());
    }
    return 0;
  }
  check_peel();
  check_refusals();
  const bool quick = arg == "quick";
  if (arg.rfind("mma", 0) == 0 || arg.rfind("bwdmma", 0) == 0) {  // "mma[:<note>]", "bwdmma[:<note>]"
    if (arg.rfind("mma", 0) == 0) {
      run_mma_cases(arg);
    } else {
      run_bwd_mma_cases(arg);
    }
    std::printf("%s: %d failure(s), %lld emulated launches\n", g_failures ? "FAILED" : "PASSED", g_failures,
                emu::g_launches);
    return g_failures ? 1 : 0;
  }
  // N C O H W kH kW sH sW pH pW dH dW g kb bias [sms optin note]
  std::vector<Case> cases = {
      {2, 3, 5, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, true, 132, 227 * 1024, "3x3 one tile"},
      {2, 2, 3, 40, 37, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, false, 132, 227 * 1024, "3x3 many tiles"},
      {1, 4, 6, 20, 18, 3, 3, 2, 1, 1, 0, 2, 1, 2, false, true, 132, 227 * 1024, "stride/dilation/groups"},
      {2, 1, 6, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1, 1, true, true, 132, 227 * 1024, "lenet-like"},
      {1, 4, 4, 30, 12, 7, 7, 1, 1, 3, 3, 1, 1, 4, true, false, 132, 227 * 1024, "7x7 depthwise"},
      {2, 3, 4, 11, 13, 2, 3, 1, 2, 0, 1, 1, 1, 1, true, true, 132, 227 * 1024, "rectangular 2x3 (generic)"},
      {1, 2, 2, 12, 12, 4, 4, 2, 2, 1, 1, 1, 1, 1, false, false, 1, 227 * 1024, "even 4x4, one split"},
      {2, 3, 3, 7, 6, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, true, 132, 227 * 1024, "1x1"},
      {1, 2, 2, 37, 35, 3, 3, 9, 7, 2, 1, 1, 1, 1, true, false, 132, 48 * 1024, "large stride"},
      // 99 KB: the smallest opt-in of an sm_80+ part (sm_86/89); float64 needs two 61x61 boxes.
      {1, 1, 2, 40, 40, 3, 3, 1, 1, 30, 30, 30, 30, 1, true, false, 132, 99 * 1024, "huge dilation: tile shrinks"},
      {1, 1, 1, 13, 13, 11, 11, 1, 1, 5, 5, 1, 1, 1, true, true, 132, 48 * 1024, "11x11 at 48K: row chunks"},
      {1, 2, 3, 16, 16, 7, 7, 1, 1, 3, 3, 1, 1, 1, true, true, 132, 48 * 1024, "7x7 at 48K"},
  };
  if (quick) cases.resize(3);
  if (!quick && !arg.empty()) {
    std::vector<Case> sel;
    for (const Case& c : cases) {
      if (std::string(c.note).find(arg) != std::string::npos) sel.push_back(c);
    }
    cases = sel;
  }
  for (const Case& c : cases) {
    check_case<float>(c, false, 1e-6, 1);
    check_case<double>(c, false, 1e-12, 2);
    if (!quick) {
      g_force_int64 = true;  // float64 plans are all generic: the int64 kernels run
      check_case<double>(c, true, 1e-12, 6);
      g_force_int64 = false;
      check_case<float>(c, true, 1e-6, 3);
      check_case<__half>(c, false, 5e-3, 4);
      check_case<__nv_bfloat16>(c, false, 2e-2, 5);
    }
  }
  std::printf("%s: %d failure(s), %lld emulated launches\n", g_failures ? "FAILED" : "PASSED", g_failures,
              emu::g_launches);
  return g_failures ? 1 : 0;
}
