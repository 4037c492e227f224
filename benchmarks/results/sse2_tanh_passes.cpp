// Cycle counts behind "A third pass: the tanh of several vectors interleaved" in
// cpu-amd-epyc-zen5_20261206_isa-timing-sse2-estrin.md (issue 24 item 2): the two tanh passes
// of the SSE2 kernels for 3x3 kernels (the forward's y += tanh(sigma) X and the backward's
// d sigma = g X (1 - t^2) with dX += g t), over one tile's 9 sigma rows in L1, the tanh
// taken one vector at a time (simd::tanh) or 2 and 4 at a time (simd::tanh_each).
//
//   g++ -std=c++20 -O3 -Icsrc benchmarks/results/sse2_tanh_passes.cpp -o /tmp/tanh_passes && /tmp/tanh_passes
//
// x86-64; single thread; best of 7; the clock calibrated by a chain of dependent integer adds.
#include <cstdio>
#include <type_traits>

#include "cycle_clock.h"
#include "ops/cpu/simd/vec.h"

namespace {

namespace simd = adaptive_conv_ext::simd;
using V = simd::Vec<float>;
constexpr int kTile = 64, kRows = 9, kV = V::size();

// cycles per tanh vector of fn(), one pass over a tile
template <typename Fn>
double cycles_per_vector(double ns_cycle, Fn fn) {
  return cycles_per_call(ns_cycle, 20000, fn, 7) / (kRows * kTile / kV);
}

alignas(64) float sigma[kRows * kTile], x[kRows * kTile], dpatch[kRows * kTile], dsig[kRows * kTile], gout[kTile];

// For the 2 pixel vectors at p: body(uv, j, t) with t = tanh(sigma[uv][p + j V]), the tanh
// taken R kernel rows (2 R vectors) at a time; R = 0: one vector at a time by simd::tanh.
template <int R, typename Body>
inline void tanh_rows(int p, Body&& body) {
  if constexpr (R == 0) {
#pragma GCC unroll 9
    for (int uv = 0; uv < kRows; ++uv)
      for (int j = 0; j < 2; ++j) body(uv, j, simd::tanh(V::loadu(sigma + uv * kTile + p + j * kV)));
  } else {
    auto group = [&](auto rows, int uv0) {
      constexpr int n = decltype(rows)::value;
      V t[2 * n];
      for (int i = 0; i < 2 * n; ++i) t[i] = V::loadu(sigma + (uv0 + i / 2) * kTile + p + (i % 2) * kV);
      simd::tanh_each(t);
      for (int i = 0; i < 2 * n; ++i) body(uv0 + i / 2, i % 2, t[i]);
    };
    int uv0 = 0;
    for (; uv0 + R <= kRows; uv0 += R) group(std::integral_constant<int, R>{}, uv0);
    for (; uv0 < kRows; ++uv0) group(std::integral_constant<int, 1>{}, uv0);
  }
}

template <int R>
void forward_pass() {
  for (int p = 0; p < kTile; p += 2 * kV) {
    V y[2] = {V::loadu(dpatch + p), V::loadu(dpatch + p + kV)};
    tanh_rows<R>(p, [&](int uv, int j, V t) { y[j] = simd::fmadd(t, V::loadu(x + uv * kTile + p + j * kV), y[j]); });
    y[0].store(dsig + p);
    y[1].store(dsig + p + kV);
  }
}

template <int R>
void backward_pass() {
  for (int p = 0; p < kTile; p += 2 * kV) {
    const V g[2] = {V::loadu(gout + p), V::loadu(gout + p + kV)};
    tanh_rows<R>(p, [&](int uv, int j, V t) {
      const int at = uv * kTile + p + j * kV;
      simd::fmadd(g[j], t, V::loadu(dpatch + at)).store(dpatch + at);
      const V gx = g[j] * V::loadu(x + at);
      simd::fnmadd(gx * t, t, gx).store(dsig + at);
    });
  }
}

}  // namespace

int main() {
  for (int i = 0; i < kRows * kTile; ++i) sigma[i] = (i % 37) * 0.3f - 5, x[i] = 0.5f, dpatch[i] = 0;
  for (int i = 0; i < kTile; ++i) gout[i] = 0.1f;
  const double c = ns_per_cycle();
  std::printf("clock %.2f GHz (integer-add chain); %s build\n", 1 / c, simd::kIsaName);
  std::printf("cycles per tanh vector      1 at a time   2 at a time   4 at a time\n");
  std::printf("forward  y += tanh X        %11.2f   %11.2f   %11.2f\n", cycles_per_vector(c, forward_pass<0>),
              cycles_per_vector(c, forward_pass<1>), cycles_per_vector(c, forward_pass<2>));
  std::printf("backward d sigma, dX += g t %11.2f   %11.2f   %11.2f\n", cycles_per_vector(c, backward_pass<0>),
              cycles_per_vector(c, backward_pass<1>), cycles_per_vector(c, backward_pass<2>));
  float sum = 0;
  for (int i = 0; i < kRows * kTile; ++i) sum += dsig[i] + dpatch[i];
  std::printf("(checksum %g)\n", sum);
}
