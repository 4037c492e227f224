// The portable CPU kernels (adaptive_conv2d_cpu_kernel_impl.h, CPU_CAPABILITY DEFAULT) without
// torch: forward and backward against a float64 loop of the SPEC math, in float64 and float32,
// on tiles of both layouts, kernel sizes 3, 5 and 7, strides, dilations, groups, without kernel
// bias and without the input gradient (a first layer). The range is also split in pieces
// (as threads would take it): the results must not change, bit for bit. tests/test_simd.py
// builds it for this machine and, with a cross compiler and qemu, for AArch64 (the NEON build,
// which no machine here runs natively). Prints "<isa> kernels ok <checks>" and exits 0, or
// prints the failures and exits 1.
#define CPU_CAPABILITY DEFAULT
#include "ops/cpu/adaptive_conv2d_cpu_kernel_impl.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <random>

namespace {

int pieces = 1;  // parallel_for_range hands out the range in this many pieces

int failures = 0;
long checks = 0;

template <typename T>
double rel_err(const std::vector<T>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    den += want[i] * want[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct Case {
  const char* name;
  adaptive_conv_ext::AdaptiveConvShape s;
  bool kernel_bias, input_grad;
};

adaptive_conv_ext::AdaptiveConvShape shape(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t groups,
                                           int64_t k, int64_t sH, int64_t sW, int64_t pH, int64_t pW, int64_t dH,
                                           int64_t dW) {
  const int64_t Ho = (H + 2 * pH - dH * (k - 1) - 1) / sH + 1, Wo = (W + 2 * pW - dW * (k - 1) - 1) / sW + 1;
  return {N, C, H, W, O, groups, k, k, sH, sW, pH, pW, dH, dW, Ho, Wo};
}

// y, and the gradients of sum(y * gy), by loops over the SPEC math in float64
struct Reference {
  std::vector<double> y, gx, gw, gkb;
};

Reference reference(const adaptive_conv_ext::AdaptiveConvShape& s, const std::vector<double>& x,
                    const std::vector<double>& w, const std::vector<double>& kb, const std::vector<double>& gy) {
  const int64_t T2 = s.taps(), Cg = s.in_per_group(), Og = s.out_per_group();
  Reference r{std::vector<double>(s.N * s.O * s.Ho * s.Wo), std::vector<double>(x.size()),
              std::vector<double>(w.size()), std::vector<double>(s.O * Cg * T2)};
  std::vector<double> patch(T2), sigma(T2);
  std::vector<int64_t> at(T2);  // input index of each tap, -1 in the padding
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t c = 0; c < Cg; ++c) {
        const int64_t ci = (o / Og) * Cg + c, pair = o * Cg + c;
        for (int64_t i = 0; i < s.Ho; ++i)
          for (int64_t j = 0; j < s.Wo; ++j) {
            for (int64_t u = 0; u < s.kH; ++u)
              for (int64_t v = 0; v < s.kW; ++v) {
                const int64_t ih = i * s.sH - s.pH + u * s.dH, iw = j * s.sW - s.pW + v * s.dW;
                const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
                at[u * s.kW + v] = inside ? ((n * s.C + ci) * s.H + ih) * s.W + iw : -1;
                patch[u * s.kW + v] = inside ? x[at[u * s.kW + v]] : 0.0;
              }
            const int64_t yi = ((n * s.O + o) * s.Ho + i) * s.Wo + j;
            const double g = gy[yi];
            for (int64_t uv = 0; uv < T2; ++uv) {
              double acc = kb.empty() ? 0.0 : kb[pair * T2 + uv];
              for (int64_t ab = 0; ab < T2; ++ab) acc += w[(pair * T2 + uv) * T2 + ab] * patch[ab];
              sigma[uv] = acc;
            }
            for (int64_t uv = 0; uv < T2; ++uv) {
              const double t = std::tanh(sigma[uv]);
              r.y[yi] += t * patch[uv];
              if (at[uv] >= 0) r.gx[at[uv]] += g * t;
              const double ds = g * patch[uv] * (1 - t * t);
              r.gkb[pair * T2 + uv] += ds;
              for (int64_t ab = 0; ab < T2; ++ab) {
                r.gw[(pair * T2 + uv) * T2 + ab] += ds * patch[ab];
                if (at[ab] >= 0) r.gx[at[ab]] += w[(pair * T2 + uv) * T2 + ab] * ds;
              }
            }
          }
      }
  return r;
}

template <typename T>
struct Result {
  std::vector<T> y, gx, gw, gkb;
  bool operator==(const Result& o) const { return y == o.y && gx == o.gx && gw == o.gw && gkb == o.gkb; }
};

template <typename T>
Result<T> run(const Case& k, const std::vector<double>& x64, const std::vector<double>& w64,
              const std::vector<double>& kb64, const std::vector<double>& gy64) {
  namespace K = adaptive_conv_ext::cpu::DEFAULT;
  const auto& s = k.s;
  std::vector<T> x(x64.begin(), x64.end()), w(w64.begin(), w64.end()), kb(kb64.begin(), kb64.end()),
      gy(gy64.begin(), gy64.end());
  Result<T> r{std::vector<T>(s.N * s.O * s.Ho * s.Wo), std::vector<T>(k.input_grad ? x.size() : 0),
              std::vector<T>(w.size()), std::vector<T>(s.O * s.in_per_group() * s.taps())};
  const T* kbp = k.kernel_bias ? kb.data() : nullptr;
  K::forward(s, x.data(), w.data(), kbp, nullptr, r.y.data());
  K::backward(s, gy.data(), x.data(), w.data(), kbp, k.input_grad ? r.gx.data() : nullptr, r.gw.data(),
              r.gkb.data());
  return r;
}

template <typename T>
void check(const Case& k, double tol, std::mt19937& rng) {
  const auto& s = k.s;
  std::normal_distribution<double> normal;
  const int64_t T2 = s.taps(), Cg = s.in_per_group();
  std::vector<double> x(s.N * s.C * s.H * s.W), w(s.O * Cg * T2 * T2), kb(k.kernel_bias ? s.O * Cg * T2 : 0),
      gy(s.N * s.O * s.Ho * s.Wo);
  for (auto& v : x) v = normal(rng);
  for (auto& v : w) v = 0.2 * normal(rng);
  for (auto& v : kb) v = normal(rng);
  for (auto& v : gy) v = normal(rng);
  // the reference in float64 from the inputs as this precision holds them
  auto narrow = [](std::vector<double> v) {
    for (auto& e : v) e = double(T(e));
    return v;
  };
  x = narrow(x), w = narrow(w), kb = narrow(kb), gy = narrow(gy);
  const Reference want = reference(s, x, w, kb, gy);
  pieces = 1;
  const Result<T> got = run<T>(k, x, w, kb, gy);
  const char* type = sizeof(T) == 8 ? "float64" : "float32";
  auto expect = [&](const char* what, double err) {
    ++checks;
    if (!(err < tol)) {
      ++failures;
      std::printf("FAIL %s %s %s: relative error %.3g (tolerance %.1g)\n", k.name, type, what, err, tol);
    }
  };
  expect("y", rel_err(got.y, want.y));
  if (k.input_grad) expect("grad x", rel_err(got.gx, want.gx));
  expect("grad weight", rel_err(got.gw, want.gw));
  if (k.kernel_bias) expect("grad kernel_bias", rel_err(got.gkb, want.gkb));
  pieces = 3;
  ++checks;
  if (!(run<T>(k, x, w, kb, gy) == got)) {
    ++failures;
    std::printf("FAIL %s %s: a range split in 3 pieces changed the results\n", k.name, type);
  }
}

}  // namespace

// the kernels' thread pool: here the range in `pieces` pieces, one after another
void adaptive_conv_ext::cpu::parallel_for_range(int64_t begin, int64_t end, int64_t, void* ctx, RangeFn fn) {
  const int64_t n = end - begin, step = std::max<int64_t>(1, (n + pieces - 1) / pieces);
  for (int64_t b = begin; b < end; b += step) fn(ctx, b, std::min(end, b + step));
}

int main() {
  const Case cases[] = {
      {"k3 direct tiles", shape(2, 4, 11, 70, 4, 1, 3, 1, 1, 1, 1, 1, 1), true, true},
      {"k3 staged tiles", shape(2, 4, 11, 13, 12, 1, 3, 1, 1, 1, 1, 1, 1), true, true},
      {"k3 no kernel bias", shape(1, 4, 11, 13, 12, 1, 3, 1, 1, 1, 1, 1, 1), false, true},
      {"k3 first layer, direct", shape(2, 4, 11, 70, 4, 1, 3, 1, 1, 1, 1, 1, 1), true, false},
      {"k3 first layer, staged", shape(1, 3, 11, 13, 12, 1, 3, 1, 1, 1, 1, 1, 1), true, false},
      {"k5 stride 2x3 dilation 1x2 groups 2", shape(2, 4, 11, 33, 4, 2, 5, 2, 3, 2, 0, 1, 2), true, true},
      {"k7 depthwise", shape(1, 4, 15, 15, 4, 4, 7, 1, 1, 3, 3, 1, 1), true, true},
      {"k2 (4 rows a block, a remainder)", shape(1, 3, 9, 10, 5, 1, 2, 1, 1, 0, 1, 1, 1), true, true},
  };
  std::mt19937 rng(2024);
  for (const Case& k : cases) {
    check<double>(k, 1e-12, rng);
    check<float>(k, 1e-5, rng);
  }
  if (failures) {
    std::printf("%s: %d of %ld checks failed\n", adaptive_conv_ext::simd::kIsaName, failures, checks);
    return 1;
  }
  std::printf("%s kernels ok %ld\n", adaptive_conv_ext::simd::kIsaName, checks);
  return 0;
}
