// Each operation of csrc/ops/cpu/simd/vec.h against scalar code, for the instruction
// set the compiler flags select (tests/test_simd.py builds and runs it once per
// instruction set the machine has). Prints "<isa> ok <checks>" and exits 0, or prints
// every failure and exits 1.
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "ops/cpu/simd/vec.h"

namespace s = adaptive_conv_ext::simd;

static int failures = 0;
static long checks = 0;

static bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

#define CHECK(cond, ...)                                   \
  do {                                                     \
    ++checks;                                              \
    if (!(cond)) {                                         \
      if (++failures <= 20) {                              \
        std::printf("FAIL %s:%d: ", __FILE__, __LINE__);   \
        std::printf(__VA_ARGS__);                          \
        std::printf("\n");                                 \
      }                                                    \
    }                                                      \
  } while (0)

// a * b + c rounded once (fused) or twice (multiply, then add): the portable build
// fuses where the target and compiler do.
template <typename T>
static bool fma_result(T got, T a, T b, T c, bool negate) {
  const T fused = negate ? std::fma(-a, b, c) : std::fma(a, b, c);
  volatile T product = a * b;  // rounded on its own
  const T twice = negate ? T(c - product) : T(product + c);
  return same(got, fused) || same(got, twice);
}

template <typename T>
static void test_arithmetic(std::mt19937& rng) {
  using V = s::Vec<T>;
  constexpr int n = V::size();
  std::uniform_real_distribution<T> dist(-4, 4);
  // an unaligned buffer: loadu/store must work at any address
  std::vector<T> buf(4 * n + 1);
  for (int trial = 0; trial < 1000; ++trial) {
    T a[n], b[n], c[n], out[n];
    for (int i = 0; i < n; ++i) a[i] = dist(rng), b[i] = dist(rng), c[i] = dist(rng);
    if (trial == 0) a[1] = std::numeric_limits<T>::quiet_NaN(), b[2] = std::numeric_limits<T>::infinity();
    std::memcpy(buf.data() + 1, a, sizeof(a));
    const V va = V::loadu(buf.data() + 1), vb = V::loadu(b), vc = V::loadu(c);
    va.store(buf.data() + 1 + n);
    for (int i = 0; i < n; ++i) CHECK(same(buf[1 + n + i], a[i]), "loadu/store lane %d", i);

    (va + vb).store(out);
    for (int i = 0; i < n; ++i) CHECK(same(out[i], a[i] + b[i]), "add lane %d", i);
    (va * vb).store(out);
    for (int i = 0; i < n; ++i) CHECK(same(out[i], a[i] * b[i]), "mul lane %d", i);
    s::fmadd(va, vb, vc).store(out);
    for (int i = 0; i < n; ++i) CHECK(fma_result(out[i], a[i], b[i], c[i], false), "fmadd lane %d", i);
    s::fnmadd(va, vb, vc).store(out);
    for (int i = 0; i < n; ++i) CHECK(fma_result(out[i], a[i], b[i], c[i], true), "fnmadd lane %d", i);
    V(c[0]).store(out);
    for (int i = 0; i < n; ++i) CHECK(same(out[i], c[0]), "broadcast lane %d", i);
#if defined(ADAPTIVE_CONV_SIMD_PORTABLE)
    V lanes[n];
    s::broadcast_lanes(va, lanes);
    for (int l = 0; l < n; ++l) {
      lanes[l].store(out);
      for (int i = 0; i < n; ++i) CHECK(same(out[i], a[l]), "broadcast_lanes: lane %d of vector %d", i, l);
    }
#endif
  }
  T out[n];
  V(T(-0.0)).store(out);  // the sign of zero survives a broadcast
  for (int i = 0; i < n; ++i) CHECK(out[i] == 0 && std::signbit(out[i]), "broadcast(-0) lane %d", i);
}

static void test_clamp() {
  using V = s::Vec<float>;
  constexpr int n = V::size();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const float values[] = {nan, -nan, inf, -inf, 0.0f, -0.0f, 1.0f, -1.0f, 8.99f, 9.0f, 9.01f, -9.01f, 1e30f, -1e-40f};
  for (float x : values) {
    for (float bound : {9.0f, -9.0f, 0.0f}) {
      float out[n];
      s::clamp_max(V(x), V(bound)).store(out);
      const float want_max = std::isnan(x) ? x : (x > bound ? bound : x);
      for (int i = 0; i < n; ++i) CHECK(same(out[i], want_max), "clamp_max(%g, %g) = %g", x, bound, out[i]);
      s::clamp_min(V(x), V(bound)).store(out);
      const float want_min = std::isnan(x) ? x : (x < bound ? bound : x);
      for (int i = 0; i < n; ++i) CHECK(same(out[i], want_min), "clamp_min(%g, %g) = %g", x, bound, out[i]);
    }
  }
}

// 1/q over the tanh's denominator range [1, 420] and beyond: the estimate plus one
// Newton step stays within 2^-22 of the exact reciprocal.
static void test_reciprocal() {
  using V = s::Vec<float>;
  constexpr int n = V::size();
  double worst = 0;
  for (float q = 1.0f; q < 4096.0f; q = std::nextafter(q, 5000.0f) + q * 1e-5f) {
    float out[n];
    s::reciprocal(V(q)).store(out);
    const double err = std::fabs(out[0] * double(q) - 1.0);
    worst = std::max(worst, err);
    CHECK(err < 0x1p-22, "reciprocal(%.9g) = %.9g (rel err %.3g)", q, out[0], err);
  }
  std::printf("reciprocal: max rel err %.3g over [1, 4096]\n", worst);
}

// fn(x) for the float32 tanh sweeps: every 97th bit pattern (both signs), the edge cases, and
// every float32 in [sat_lo, sat_hi] (either side of the saturation point) with both signs
template <typename Fn>
static void for_each_tanh_input(float sat_lo, float sat_hi, Fn&& fn) {
  auto from_bits = [&](uint32_t bits) {
    float x;
    std::memcpy(&x, &bits, 4);
    fn(x);
  };
  for (uint64_t bits = 0; bits <= 0x7FC00000u; bits += 97)
    from_bits(uint32_t(bits)), from_bits(uint32_t(bits) | 0x80000000u);
  for (uint32_t bits : {1u, 0x007FFFFFu, 0x00800000u, 0x3F800000u, 0x41100000u, 0x41100001u, 0x7F7FFFFFu,
                        0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x80000000u})
    from_bits(bits);
  for (float x = sat_lo; x <= sat_hi; x = std::nextafter(x, std::numeric_limits<float>::infinity())) fn(x), fn(-x);
}

// The float32 tanh against float64 tanh over for_each_tanh_input's values
static void test_tanh_float() {
  using V = s::Vec<float>;
  constexpr int n = V::size();
  double worst = 0;
  float worst_x = 0;
  float lanes[n], out[n];
  int filled = 0;
  auto flush = [&] {
    s::tanh(V::loadu(lanes)).store(out);
    for (int i = 0; i < filled; ++i) {
      const float x = lanes[i];
      const double want = std::tanh(double(x));
      if (std::isnan(x)) {
        CHECK(std::isnan(out[i]), "tanh(NaN) = %g", out[i]);
        continue;
      }
      CHECK(std::fabs(out[i]) <= 1.0f, "|tanh(%g)| = %.9g > 1", x, out[i]);
      if (x == 0) {
        CHECK(out[i] == 0, "tanh(%g) = %g", x, out[i]);
        continue;
      }
      const double rel = std::fabs(out[i] - want) / std::fabs(want);
      if (rel > worst) worst = rel, worst_x = x;
      CHECK(rel < 1e-6, "tanh(%.9g) = %.9g, want %.17g (rel %.3g)", x, out[i], want, rel);
      if (std::fabs(x) < 1e-4f)  // rounds to x itself, subnormals not flushed
        CHECK(std::fabs(out[i] - x) <= std::fabs(x) * 0x1p-23f, "tanh(%g) = %g", x, out[i]);
    }
    filled = 0;
  };
  // saturation: x^2 clamped at 81
  for_each_tanh_input(8.75f, 9.25f, [&](float x) {
    lanes[filled++] = x;
    if (filled == n) flush();
  });
  while (filled > 0 && filled < n) lanes[filled++] = 0.5f;
  flush();
  float inf_out[n];
  s::tanh(V(std::numeric_limits<float>::infinity())).store(inf_out);
  CHECK(inf_out[0] == 1.0f, "tanh(inf) = %g", inf_out[0]);
  s::tanh(V(-std::numeric_limits<float>::infinity())).store(inf_out);
  CHECK(inf_out[0] == -1.0f, "tanh(-inf) = %g", inf_out[0]);
  std::printf("tanh float32: max rel err %.3g (at %.9g)\n", worst, worst_x);
}

static void test_tanh_double(std::mt19937& rng) {
  using V = s::Vec<double>;
  constexpr int n = V::size();
  std::uniform_real_distribution<double> dist(-25, 25);
  for (int trial = 0; trial < 20000; ++trial) {
    double x[n], out[n];
    for (int i = 0; i < n; ++i) x[i] = trial < 10 ? std::ldexp(dist(rng), -1000 - trial * 10) : dist(rng);
    s::tanh(V::loadu(x)).store(out);
    for (int i = 0; i < n; ++i) CHECK(same(out[i], std::tanh(x[i])), "tanh(%.17g) = %.17g", x[i], out[i]);
  }
}

// tanh_each on N vectors at once is tanh on each, bit for bit (the SSE2 build interleaves
// the N evaluations, the others loop), for N = 1 .. 5 and values over the whole range
template <typename T, int N>
static void test_tanh_each_n(std::mt19937& rng) {
  using V = s::Vec<T>;
  constexpr int n = V::size();
  std::uniform_real_distribution<double> wide(-12, 12), narrow(-0.01, 0.01);
  const T special[] = {T(0), -T(0), T(9), T(-9), std::numeric_limits<T>::infinity(),
                       -std::numeric_limits<T>::infinity(), std::numeric_limits<T>::quiet_NaN(),
                       std::numeric_limits<T>::denorm_min(), T(1e30)};
  for (int trial = 0; trial < 2000; ++trial) {
    T in[N][n], got[N][n], want[n];
    for (int v = 0; v < N; ++v)
      for (int i = 0; i < n; ++i) {
        const int pick = int(rng() % 16);
        in[v][i] = pick < 9 ? special[pick] : T(pick < 13 ? wide(rng) : narrow(rng));
      }
    V x[N];
    for (int v = 0; v < N; ++v) x[v] = V::loadu(in[v]);
    s::tanh_each(x);
    for (int v = 0; v < N; ++v) {
      x[v].store(got[v]);
      s::tanh(V::loadu(in[v])).store(want);
      for (int i = 0; i < n; ++i)
        CHECK(std::memcmp(&got[v][i], &want[i], sizeof(T)) == 0 || (std::isnan(got[v][i]) && std::isnan(want[i])),
              "tanh_each<%d>(%.9g) = %.9g, tanh = %.9g", N, double(in[v][i]), double(got[v][i]), double(want[i]));
    }
  }
}

static void test_tanh_each(std::mt19937& rng) {
  test_tanh_each_n<float, 1>(rng);
  test_tanh_each_n<float, 2>(rng);
  test_tanh_each_n<float, 3>(rng);
  test_tanh_each_n<float, 4>(rng);
  test_tanh_each_n<float, 5>(rng);
  test_tanh_each_n<double, 2>(rng);
}

#if defined(ADAPTIVE_CONV_SIMD_SCALED_TANH)
// The forward's scaled tanh, t' = gamma tanh(u / a) (a = kScaledTanhArgScale, gamma =
// kScaledTanhOutScale), as the kernels use it: their y is t' times the float 1 / gamma. Against
// float64 tanh over for_each_tanh_input's values (saturation at u = 9 a); 2 and 4 vectors at a
// time bit for bit as 1.
static void test_scaled_tanh() {
  using V = s::Vec<float>;
  constexpr int n = V::size();
  const double a = s::kScaledTanhArgScale, gamma = s::kScaledTanhOutScale, inv_gamma = float(1 / gamma);
  double worst = 0;
  float worst_x = 0;
  std::vector<float> us;
  for_each_tanh_input(float(8.75 * a), float(9.25 * a), [&](float u) { us.push_back(u); });
  while (us.size() % (4 * n)) us.push_back(0.5f);
  for (size_t at = 0; at < us.size(); at += 4 * n) {
    V one[1], two[2], four[4];
    float got[4][n], got2[2][n], got4[4][n];
    for (int v = 0; v < 4; ++v) {
      one[0] = four[v] = V::loadu(&us[at + v * n]);
      if (v < 2) two[v] = four[v];
      s::scaled_tanh_each(one);
      one[0].store(got[v]);
    }
    s::scaled_tanh_each(two);
    s::scaled_tanh_each(four);
    for (int v = 0; v < 4; ++v) {
      four[v].store(got4[v]);
      if (v < 2) two[v].store(got2[v]);
    }
    for (int v = 0; v < 4; ++v)
      for (int i = 0; i < n; ++i) {
        const float u = us[at + v * n + i], t = got[v][i];
        CHECK(std::memcmp(&t, &got4[v][i], 4) == 0 || (std::isnan(t) && std::isnan(got4[v][i])),
              "scaled tanh of 4 vectors (%.9g) = %.9g, of 1 = %.9g", u, got4[v][i], t);
        if (v < 2)
          CHECK(std::memcmp(&t, &got2[v][i], 4) == 0 || (std::isnan(t) && std::isnan(got2[v][i])),
                "scaled tanh of 2 vectors (%.9g) = %.9g, of 1 = %.9g", u, got2[v][i], t);
        if (std::isnan(u)) {
          CHECK(std::isnan(t), "scaled tanh(NaN) = %g", t);
          continue;
        }
        CHECK(std::fabs(t) <= float(gamma), "|scaled tanh(%g)| = %.9g > gamma", u, t);
        const double x = double(u) / a, want = std::tanh(x), y = double(t) * inv_gamma;
        if (std::fabs(x) < 1e-30) {  // u P0 underflows (see kScaledTanhConstants)
          CHECK(std::fabs(y - want) <= 1e-36, "scaled tanh(%g) / gamma = %g, want %g", u, y, want);
          continue;
        }
        const double rel = std::fabs(y - want) / std::fabs(want);
        if (rel > worst) worst = rel, worst_x = float(x);
        CHECK(rel < 1e-6, "scaled tanh(%.9g) / gamma = %.9g, want tanh(%.9g) = %.17g (rel %.3g)", u, y, x, want, rel);
      }
  }
  std::printf("scaled tanh float32: max rel err %.3g (at x = %.9g)\n", worst, worst_x);
}
#endif

int main() {
  std::mt19937 rng(12345);
  test_arithmetic<float>(rng);
  test_arithmetic<double>(rng);
  test_clamp();
  test_reciprocal();
  test_tanh_float();
  test_tanh_double(rng);
  test_tanh_each(rng);
#if defined(ADAPTIVE_CONV_SIMD_SCALED_TANH)
  test_scaled_tanh();
#endif
  if (failures) {
    std::printf("%s: %d of %ld checks failed\n", s::kIsaName, failures, checks);
    return 1;
  }
  std::printf("%s ok %ld\n", s::kIsaName, checks);
  return 0;
}
