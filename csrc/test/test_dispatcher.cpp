// C++ users reach the operators with no Python, through the typed functions of
// <adaptive_conv_ext/ops.h> (stable ABI). This test is a libtorch program: it links
// the adaptive_conv_ext shared library (whose static initialisers register the
// schemas and CPU kernels), computes SPEC section 1 as plain loops on at::Tensors in
// double, and calls the operators with the same tensors handed over as
// torch::stable::Tensors. Exit status 0 on success (run by ctest).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <adaptive_conv_ext/ops.h>
#include <torch/csrc/inductor/aoti_torch/utils.h>

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

// at::Tensor <-> torch::stable::Tensor (the same TensorImpl, no copy).
torch::stable::Tensor stable(const at::Tensor& t) {
  return torch::stable::Tensor(torch::aot_inductor::new_tensor_handle(at::Tensor(t)));
}
at::Tensor aten(const torch::stable::Tensor& t) {
  return *torch::aot_inductor::tensor_handle_to_tensor_pointer(t.get());
}

struct Gradients {
  at::Tensor gx, gw, gkb;
};

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
  } catch (const std::exception&) {
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
  namespace ops = adaptive_conv_ext;
  auto forward = [](const at::Tensor& x, const at::Tensor& w, const at::Tensor& kb, const at::Tensor& b,
                    const Geometry& g) {
    return aten(ops::adaptive_conv2d_forward(stable(x), stable(w), stable(kb), stable(b), g.stride,
                                             g.padding, g.dilation, g.groups));
  };
  auto backward = [](const at::Tensor& gy, const at::Tensor& x, const at::Tensor& w, const at::Tensor& kb,
                     const Geometry& g, std::array<bool, 2> mask) {
    const auto [gx, gw, gkb] = ops::adaptive_conv2d_backward(stable(gy), stable(x), stable(w), stable(kb),
                                                            g.stride, g.padding, g.dilation, g.groups, mask);
    return Gradients{aten(gx), aten(gw), aten(gkb)};
  };

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

  const at::Tensor y = forward(x, w, kb, b, g);
  check(y.sizes() == want.y.sizes(), "forward output shape");
  check(rel_err(y, want.y) < 1e-12, "forward float64 matches SPEC loops");
  const at::Tensor y32 = forward(x.to(at::kFloat), w.to(at::kFloat), kb.to(at::kFloat), b.to(at::kFloat), g);
  check(y32.scalar_type() == at::kFloat && rel_err(y32, want.y) < 1e-6, "forward float32 matches SPEC loops");

  const auto [gx, gw, gkb] = backward(gy, x, w, kb, g, {true, true});
  check(rel_err(gx, want.gx) < 1e-12, "backward grad_input matches SPEC loops");
  check(rel_err(gw, want.gw) < 1e-12, "backward grad_weight matches SPEC loops");
  check(rel_err(gkb, want.gkb) < 1e-12, "backward grad_kernel_bias matches SPEC loops");
  const auto [gx_only, gw_none, gkb_none] = backward(gy, x, w, kb, g, {true, false});
  check(rel_err(gx_only, want.gx) < 1e-12 && gw_none.numel() == 0 && gkb_none.numel() == 0,
        "output_mask skips the weight gradients");

  // Bad arguments are exceptions, not crashes.
  Geometry bad_groups = g, zero_stride = g;
  bad_groups.groups = 3;
  zero_stride.stride = {0, 1};
  check(throws([&] { forward(x, w.select(5, 0), kb, b, g); }), "5-D weight throws");
  check(throws([&] { forward(x, w, kb, b, bad_groups); }), "groups not dividing the channels throws");
  check(throws([&] { forward(x, w.to(at::kFloat), kb, b, g); }), "mismatched dtypes throw");
  check(throws([&] { forward(x, w, kb, b, zero_stride); }), "zero stride throws");
  check(throws([&] { backward(gy.narrow(3, 0, 3), x, w, kb, g, {true, true}); }),
        "wrongly shaped grad_output throws");

  std::printf("%s\n", failures == 0 ? "all passed" : "FAILED");
  return failures == 0 ? 0 : 1;
}
