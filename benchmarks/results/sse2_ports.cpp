// Port microbenchmarks behind "A later pass the same day" in
// cpu-amd-epyc-zen5_20261206_isa-timing-sse2-estrin.md (issue 24 item 2): what the SSE2
// build's two hot loops cost on the CPU at hand, in core cycles (a chain of dependent
// integer adds, one per cycle, calibrates the clock). Run it on an idle machine:
//
//   g++ -std=c++20 -O2 -Icsrc benchmarks/results/sse2_ports.cpp -o /tmp/sse2_ports && /tmp/sse2_ports
//
// x86-64 only (inline assembly); single thread; best of 5.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cycle_clock.h"
#include "ops/cpu/simd/vec.h"

namespace {

alignas(64) float data[1024];

// One k step of the SSE2 micro-GEMM (3 rows x 2 pixel vectors), as GCC emits it: per row a
// copy, two mulps and two addps into six accumulators (xmm0-5). "loads": the pixel vectors
// (movups) and the row's broadcast weight (movaps) come from memory, as in the kernel;
// "registers": the same arithmetic on values already in registers.
#define GEMM_ROW_LOADED(off, a0, a1) \
  "movaps " off "(%0),%%xmm14\n movaps %%xmm12,%%xmm15\n mulps %%xmm14,%%xmm15\n mulps %%xmm13,%%xmm14\n" \
  "addps %%xmm15," a0 "\n addps %%xmm14," a1 "\n"
#define GEMM_STEP_LOADED(boff)                                                                         \
  "movups " boff "(%0),%%xmm12\n movups " boff "+16(%0),%%xmm13\n" GEMM_ROW_LOADED("512", "%%xmm0", "%%xmm1") \
  GEMM_ROW_LOADED("528", "%%xmm2", "%%xmm3") GEMM_ROW_LOADED("544", "%%xmm4", "%%xmm5")
#define GEMM_MADD_REGS(b, acc) "movaps %%xmm14,%%xmm15\n mulps " b ",%%xmm15\n addps %%xmm15," acc "\n"
#define GEMM_STEP_REGS                                                                         \
  GEMM_MADD_REGS("%%xmm12", "%%xmm0") GEMM_MADD_REGS("%%xmm13", "%%xmm1") GEMM_MADD_REGS("%%xmm12", "%%xmm2") \
  GEMM_MADD_REGS("%%xmm13", "%%xmm3") GEMM_MADD_REGS("%%xmm12", "%%xmm4") GEMM_MADD_REGS("%%xmm13", "%%xmm5")
#define GEMM_CLOBBERS "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm12", "xmm13", "xmm14", "xmm15"

}  // namespace

int main() {
  namespace simd = adaptive_conv_ext::simd;
  using V = simd::Vec<float>;
  for (int i = 0; i < 1024; ++i) data[i] = 1.0f;
  const double c = ns_per_cycle();
  const long n = 50000000;
  const float* p = data;
  std::printf("clock %.2f GHz (integer-add chain)\n", 1 / c);

  // all registers 1.0: products stay 1.0, sums stay normal
  asm volatile("pcmpeqd %%xmm0,%%xmm0\n pslld $25,%%xmm0\n psrld $2,%%xmm0\n"
               "movaps %%xmm0,%%xmm1\n movaps %%xmm0,%%xmm2\n movaps %%xmm0,%%xmm3\n movaps %%xmm0,%%xmm4\n"
               "movaps %%xmm0,%%xmm5\n movaps %%xmm0,%%xmm12\n movaps %%xmm0,%%xmm13\n movaps %%xmm0,%%xmm14\n" ::: GEMM_CLOBBERS);
  const double regs = cycles_per_call(c, n, [] { asm volatile(GEMM_STEP_REGS GEMM_STEP_REGS ::: GEMM_CLOBBERS); }) / 2;
  const double loaded =
      cycles_per_call(c, n, [p] { asm volatile(GEMM_STEP_LOADED("0") GEMM_STEP_LOADED("64") :: "r"(p) : GEMM_CLOBBERS); }) / 2;
  std::printf("micro-GEMM step, 6 multiply-adds (6 mulps + 6 addps): %.2f cycles in registers, %.2f with the kernel's 5 loads\n",
              regs, loaded);

  // divps: latency (a dependent chain) and its cost beside independent mulps
  __m128 x = _mm_set1_ps(1.0f), one = _mm_set1_ps(1.0f);
  const double div_latency =
      cycles_per_call(c, n / 4, [&] { asm volatile("divps %1,%0\n divps %1,%0\n divps %1,%0\n divps %1,%0\n" : "+x"(x) : "x"(one)); }) / 4;
  // six independent mulps chains (xmm0-5 stay 1.0), then the same with a divps beside them
  // whose result nothing reads
  const double mul6 = cycles_per_call(c, n, [] {
    asm volatile("mulps %%xmm12,%%xmm0\n mulps %%xmm12,%%xmm1\n mulps %%xmm12,%%xmm2\n"
                 "mulps %%xmm12,%%xmm3\n mulps %%xmm12,%%xmm4\n mulps %%xmm12,%%xmm5\n" ::: GEMM_CLOBBERS);
  });
  const double div_mul6 = cycles_per_call(c, n, [] {
    asm volatile("movaps %%xmm12,%%xmm15\n divps %%xmm13,%%xmm15\n"
                 "mulps %%xmm12,%%xmm0\n mulps %%xmm12,%%xmm1\n mulps %%xmm12,%%xmm2\n"
                 "mulps %%xmm12,%%xmm3\n mulps %%xmm12,%%xmm4\n mulps %%xmm12,%%xmm5\n" ::: GEMM_CLOBBERS);
  });
  std::printf("divps: latency %.2f cycles; 6 mulps %.2f cycles, with one independent divps %.2f\n", div_latency, mul6, div_mul6);

  // the kernel's float32 tanh (this build: simd/vec.h's portable one when compiled without
  // -mavx2), with the forward's y += tanh(sigma) X, on independent vectors in L1
  alignas(64) static float sig[1024], xr[1024];
  for (int i = 0; i < 1024; ++i) sig[i] = (i % 37) * 0.3f - 5, xr[i] = 0.5f;
  V y0(0.0f), y1(0.0f);
  const double per_vector = cycles_per_call(c, 2000, [&] {
    for (int i = 0; i < 1024; i += 2 * V::size()) {
      y0 = simd::fmadd(simd::tanh(V::loadu(sig + i)), V::loadu(xr + i), y0);
      y1 = simd::fmadd(simd::tanh(V::loadu(sig + i + V::size())), V::loadu(xr + i + V::size()), y1);
    }
  }) / (1024 / V::size());
  float out[16];
  (y0 + y1).store(out);
  std::printf("%s tanh + multiply-add: %.2f cycles per vector (checksum %g)\n", simd::kIsaName, per_vector,
              out[0] + float(x[0]));
}
