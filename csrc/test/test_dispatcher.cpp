// C++ users reach the operators through the dispatcher, with no Python. This test
// links the adaptive_conv_ext shared library (whose static initialisers register
// the schemas and CPU kernels), calls adaptive_conv2d_forward / _backward by
// schema name, and checks them against SPEC section 1 written as plain loops, in
// double. Exit status 0 on success (run by ctest).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

using ForwardFn = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                             const std::optional<at::Tensor>&, at::IntArrayRef, at::IntArrayRef,
                             at::IntArrayRef, int64_t);
using BackwardFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
    at::IntArrayRef, at::IntArrayRef, at::IntArrayRef, int64_t, std::array<bool, 2>);

struct Geometry {
  std::array<int64_t, 2> stride, padding, dilation;
  int64_t groups;
};

// SPEC section 1, literally: forward, and the gradients of the "Gradients" section.
struct Reference {
  at::Tensor y, gx, gw, gkb;
};

Reference reference(const at::Tensor& x_, const at::Tensor& w_, const at::Tensor& kb_,
                    const at::Tensor& b_, const at::Tensor& gy_, const Geometry& g) {
  const int64_t N = x_.size(0), C = x_.size(1), H = x_.size(2), W = x_.size(3);
  const int64_t O = w_.size(0), Cg = w_.size(1), kH = w_.size(2), kW = w_.size(3);
  const int64_t Og = O / g.groups;
  const auto [sH, sW] = g.stride;
  const auto [pH, pW] = g.padding;
  const auto [dH, dW] = g.dilation;
  const int64_t Ho = (H + 2 * pH - dH * (kH - 1) - 1) / sH + 1;
  const int64_t Wo = (W + 2 * pW - dW * (kW - 1) - 1) / sW + 1;
  TORCH_CHECK(gy_.sizes() == at::IntArrayRef({N, O, Ho, Wo}), "grad_output must be (N, O, Ho, Wo)");
  const auto opts = at::TensorOptions().dtype(at::kDouble);
  Reference r{at::zeros({N, O, Ho, Wo}, opts), at::zeros_like(x_), at::zeros_like(w_),
              at::zeros_like(kb_)};
  auto x = x_.accessor<double, 4>();
  auto w = w_.accessor<double, 6>();
  auto kb = kb_.accessor<double, 4>();
  auto b = b_.accessor<double, 1>();
  auto gy = gy_.accessor<double, 4>();
  auto y = r.y.accessor<double, 4>();
  auto gx = r.gx.accessor<double, 4>();
  auto gw = r.gw.accessor<double, 6>();
  auto gkb = r.gkb.accessor<double, 4>();

  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j) {
          double acc = b[o];
          for (int64_t c = 0; c < Cg; ++c) {
            const int64_t cp = (o / Og) * Cg + c;  // c': the absolute input channel
            // X[n, c', i, j, a, b] and where it came from (or -1 in the padding).
            std::vector<double> X(kH * kW);
            std::vector<int64_t> row(kH * kW), col(kH * kW);
            for (int64_t a = 0; a < kH; ++a)
              for (int64_t bb = 0; bb < kW; ++bb) {
                const int64_t hh = i * sH - pH + a * dH, ww = j * sW - pW + bb * dW;
                const bool inside = hh >= 0 && hh < H && ww >= 0 && ww < W;
                X[a * kW + bb] = inside ? x[n][cp][hh][ww] : 0.0;
                row[a * kW + bb] = inside ? hh : -1;
                col[a * kW + bb] = ww;
              }
            for (int64_t u = 0; u < kH; ++u)
              for (int64_t v = 0; v < kW; ++v) {
                double sigma = kb[o][c][u][v];
                for (int64_t a = 0; a < kH; ++a)
                  for (int64_t bb = 0; bb < kW; ++bb) sigma += w[o][c][u][v][a][bb] * X[a * kW + bb];
                const double t = std::tanh(sigma);
                acc += t * X[u * kW + v];
                // Gradients, with g = gy[n, o, i, j].
                const double go = gy[n][o][i][j];
                const double dsigma = go * X[u * kW + v] * (1.0 - t * t);
                gkb[o][c][u][v] += dsigma;
                if (row[u * kW + v] >= 0) gx[n][cp][row[u * kW + v]][col[u * kW + v]] += go * t;
                for (int64_t a = 0; a < kH; ++a)
                  for (int64_t bb = 0; bb < kW; ++bb) {
                    gw[o][c][u][v][a][bb] += dsigma * X[a * kW + bb];
                    if (row[a * kW + bb] >= 0)
                      gx[n][cp][row[a * kW + bb]][col[a * kW + bb]] += dsigma * w[o][c][u][v][a][bb];
                  }
              }
          }
          y[n][o][i][j] = acc;
        }
  return r;
}

double rel_err(const at::Tensor& out, const at::Tensor& ref) {
  return (out.to(at::kDouble) - ref).norm().item<double>() / ref.norm().item<double>();
}

template <typename F>
bool throws(F&& f) {
  try {
    f();
  } catch (const c10::Error&) {
    return true;
  }
  return false;
}

}  // namespace

int main() {
  auto& dispatcher = c10::Dispatcher::singleton();
  // Throws if the library was not loaded (its registrations never ran).
  auto forward_handle = dispatcher.findSchemaOrThrow("adaptive_conv_ext::adaptive_conv2d_forward", "");
  auto backward_handle = dispatcher.findSchemaOrThrow("adaptive_conv_ext::adaptive_conv2d_backward", "");
  check(forward_handle.hasKernelForDispatchKey(c10::DispatchKey::CPU), "forward has a CPU kernel");
  check(backward_handle.hasKernelForDispatchKey(c10::DispatchKey::CPU), "backward has a CPU kernel");
  auto forward = forward_handle.typed<ForwardFn>();
  auto backward = backward_handle.typed<BackwardFn>();

  // Small, but every geometry knob is off its default and the kernel is not square.
  at::manual_seed(0);
  const Geometry g{{2, 1}, {1, 0}, {1, 2}, 2};
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor x = at::randn({2, 4, 7, 8}, f64);
  const at::Tensor w = at::randn({6, 2, 3, 2, 3, 2}, f64) * 0.5;
  const at::Tensor kb = at::randn({6, 2, 3, 2}, f64) * 0.5;
  const at::Tensor b = at::randn({6}, f64);
  const at::Tensor gy = at::randn({2, 6, 4, 6}, f64);  // (N, O, Ho, Wo)
  const Reference want = reference(x, w, kb, b, gy, g);

  const at::Tensor y = forward.call(x, w, kb, b, g.stride, g.padding, g.dilation, g.groups);
  check(y.sizes() == want.y.sizes(), "forward output shape");
  check(rel_err(y, want.y) < 1e-12, "forward float64 matches SPEC loops");
  const at::Tensor y32 = forward.call(x.to(at::kFloat), w.to(at::kFloat), kb.to(at::kFloat),
                                      b.to(at::kFloat), g.stride, g.padding, g.dilation, g.groups);
  check(y32.scalar_type() == at::kFloat && rel_err(y32, want.y) < 1e-6, "forward float32 matches SPEC loops");

  const auto [gx, gw, gkb] =
      backward.call(gy, x, w, kb, g.stride, g.padding, g.dilation, g.groups, {true, true});
  check(rel_err(gx, want.gx) < 1e-12, "backward grad_input matches SPEC loops");
  check(rel_err(gw, want.gw) < 1e-12, "backward grad_weight matches SPEC loops");
  check(rel_err(gkb, want.gkb) < 1e-12, "backward grad_kernel_bias matches SPEC loops");
  const auto [gx_only, gw_none, gkb_none] =
      backward.call(gy, x, w, kb, g.stride, g.padding, g.dilation, g.groups, {true, false});
  check(rel_err(gx_only, want.gx) < 1e-12 && gw_none.numel() == 0 && gkb_none.numel() == 0,
        "output_mask skips the weight gradients");

  // Bad arguments are c10::Errors, not crashes.
  check(throws([&] { forward.call(x, w.select(5, 0), kb, b, g.stride, g.padding, g.dilation, g.groups); }),
        "5-D weight throws");
  check(throws([&] { forward.call(x, w, kb, b, g.stride, g.padding, g.dilation, 3); }),
        "groups not dividing the channels throws");
  check(throws([&] { forward.call(x, w.to(at::kFloat), kb, b, g.stride, g.padding, g.dilation, g.groups); }),
        "mismatched dtypes throw");
  check(throws([&] { forward.call(x, w, kb, b, {0, 1}, g.padding, g.dilation, g.groups); }),
        "zero stride throws");
  check(throws([&] {
          backward.call(gy.narrow(3, 0, 3), x, w, kb, g.stride, g.padding, g.dilation, g.groups, {true, true});
        }),
        "wrongly shaped grad_output throws");

  std::printf("%s\n", failures == 0 ? "all passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
