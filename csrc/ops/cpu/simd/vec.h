// The vector layer of the CPU kernels: Vec<float> and Vec<double> with exactly the
// operations the kernels use. Header-only and free of libtorch (at::vec is neither).
//
// The instruction set follows the compiler flags of the including file:
//   __AVX512F__              AVX-512 intrinsics (16 floats, 32 registers)
//   __AVX2__ and __FMA__     AVX2+FMA intrinsics (8 floats, 16 registers)
//   otherwise                GCC/Clang vector extensions, 16 bytes wide, so the
//                            compiler emits SSE2 on x86-64 and NEON on AArch64.
// Each instruction set lives in its own inline namespace: the kernels are compiled
// once per instruction set into one library, and the inline functions of two builds
// must not share a mangled name (the linker would keep one of them for all).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#if defined(__AVX512F__)
#define ADAPTIVE_CONV_SIMD_AVX512 1
#define ADAPTIVE_CONV_SIMD_NS avx512
#elif defined(__AVX2__) && defined(__FMA__)
#define ADAPTIVE_CONV_SIMD_AVX2 1
#define ADAPTIVE_CONV_SIMD_NS avx2
#else
#define ADAPTIVE_CONV_SIMD_PORTABLE 1
#if defined(__SSE2__)
#define ADAPTIVE_CONV_SIMD_SSE2 1  // the portable build on x86-64: no FMA, two-operand instructions
#endif
#define ADAPTIVE_CONV_SIMD_NS portable
#endif

namespace adaptive_conv_ext::simd {
inline namespace ADAPTIVE_CONV_SIMD_NS {

// Architectural vector registers: the micro-kernels size their register blocks by it.
#if defined(ADAPTIVE_CONV_SIMD_AVX512) || defined(__aarch64__)
constexpr int kVecRegs = 32;
#else
constexpr int kVecRegs = 16;
#endif

// Whether Vec<T>(x) with x in memory is a single load (vbroadcastss, ld1r) rather than a
// load and a shuffle on the arithmetic ports (SSE2): if not, the kernels broadcast their
// weights once instead of at each use.
#if defined(ADAPTIVE_CONV_SIMD_PORTABLE) && !defined(__aarch64__)
constexpr bool kBroadcastIsLoad = false;
#else
constexpr bool kBroadcastIsLoad = true;
#endif

// Name of this build's instruction set, for tests and messages.
#if defined(ADAPTIVE_CONV_SIMD_AVX512)
constexpr const char* kIsaName = "avx512";
#elif defined(ADAPTIVE_CONV_SIMD_AVX2)
constexpr const char* kIsaName = "avx2";
#else
constexpr const char* kIsaName = "portable";
#endif

// ---------------------------------------------------------------- AVX-512
#if defined(ADAPTIVE_CONV_SIMD_AVX512)
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int size() { return 16; }
  __m512 v;
  Vec() = default;
  Vec(__m512 r) : v(r) {}
  explicit Vec(float s) : v(_mm512_set1_ps(s)) {}
  static Vec loadu(const float* p) { return _mm512_loadu_ps(p); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  static constexpr int size() { return 8; }
  __m512d v;
  Vec() = default;
  Vec(__m512d r) : v(r) {}
  explicit Vec(double s) : v(_mm512_set1_pd(s)) {}
  static Vec loadu(const double* p) { return _mm512_loadu_pd(p); }
  void store(double* p) const { _mm512_storeu_pd(p, v); }
};
inline Vec<float> operator+(Vec<float> a, Vec<float> b) { return _mm512_add_ps(a.v, b.v); }
inline Vec<float> operator*(Vec<float> a, Vec<float> b) { return _mm512_mul_ps(a.v, b.v); }
inline Vec<double> operator+(Vec<double> a, Vec<double> b) { return _mm512_add_pd(a.v, b.v); }
inline Vec<double> operator*(Vec<double> a, Vec<double> b) { return _mm512_mul_pd(a.v, b.v); }
// a * b + c and c - a * b, one rounding
inline Vec<float> fmadd(Vec<float> a, Vec<float> b, Vec<float> c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
inline Vec<float> fnmadd(Vec<float> a, Vec<float> b, Vec<float> c) { return _mm512_fnmadd_ps(a.v, b.v, c.v); }
inline Vec<double> fmadd(Vec<double> a, Vec<double> b, Vec<double> c) { return _mm512_fmadd_pd(a.v, b.v, c.v); }
inline Vec<double> fnmadd(Vec<double> a, Vec<double> b, Vec<double> c) { return _mm512_fnmadd_pd(a.v, b.v, c.v); }
// min(x, hi) and max(x, lo) that return x where x is NaN: x86 min/max return their
// second operand when either is NaN. (All-lanes mask forms here and below: GCC 12
// warns -Wmaybe-uninitialized about the unmasked intrinsics' undefined source.)
inline Vec<float> clamp_max(Vec<float> x, Vec<float> hi) { return _mm512_mask_min_ps(x.v, 0xFFFF, hi.v, x.v); }
inline Vec<float> clamp_min(Vec<float> x, Vec<float> lo) { return _mm512_mask_max_ps(x.v, 0xFFFF, lo.v, x.v); }
// 1/q to 2^-14 relative (vrcp14ps)
inline Vec<float> reciprocal_estimate(Vec<float> q) { return _mm512_mask_rcp14_ps(q.v, 0xFFFF, q.v); }

// ---------------------------------------------------------------- AVX2 + FMA
#elif defined(ADAPTIVE_CONV_SIMD_AVX2)
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  static constexpr int size() { return 8; }
  __m256 v;
  Vec() = default;
  Vec(__m256 r) : v(r) {}
  explicit Vec(float s) : v(_mm256_set1_ps(s)) {}
  static Vec loadu(const float* p) { return _mm256_loadu_ps(p); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
};
template <>
struct Vec<double> {
  static constexpr int size() { return 4; }
  __m256d v;
  Vec() = default;
  Vec(__m256d r) : v(r) {}
  explicit Vec(double s) : v(_mm256_set1_pd(s)) {}
  static Vec loadu(const double* p) { return _mm256_loadu_pd(p); }
  void store(double* p) const { _mm256_storeu_pd(p, v); }
};
inline Vec<float> operator+(Vec<float> a, Vec<float> b) { return _mm256_add_ps(a.v, b.v); }
inline Vec<float> operator*(Vec<float> a, Vec<float> b) { return _mm256_mul_ps(a.v, b.v); }
inline Vec<double> operator+(Vec<double> a, Vec<double> b) { return _mm256_add_pd(a.v, b.v); }
inline Vec<double> operator*(Vec<double> a, Vec<double> b) { return _mm256_mul_pd(a.v, b.v); }
inline Vec<float> fmadd(Vec<float> a, Vec<float> b, Vec<float> c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
inline Vec<float> fnmadd(Vec<float> a, Vec<float> b, Vec<float> c) { return _mm256_fnmadd_ps(a.v, b.v, c.v); }
inline Vec<double> fmadd(Vec<double> a, Vec<double> b, Vec<double> c) { return _mm256_fmadd_pd(a.v, b.v, c.v); }
inline Vec<double> fnmadd(Vec<double> a, Vec<double> b, Vec<double> c) { return _mm256_fnmadd_pd(a.v, b.v, c.v); }
inline Vec<float> clamp_max(Vec<float> x, Vec<float> hi) { return _mm256_min_ps(hi.v, x.v); }
inline Vec<float> clamp_min(Vec<float> x, Vec<float> lo) { return _mm256_max_ps(lo.v, x.v); }
// 1/q to 1.5 * 2^-12 relative (vrcpps)
inline Vec<float> reciprocal_estimate(Vec<float> q) { return _mm256_rcp_ps(q.v); }

// ---------------------------------------------------------------- portable
#else
// 16 bytes: one SSE2 or NEON register; the compiler picks the instructions. (A
// traits type: GCC drops vector_size from a typedef of a template parameter.)
template <typename T>
struct RawVec;
template <>
struct RawVec<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct RawVec<double> {
  typedef double type __attribute__((vector_size(16)));
};
template <>
struct RawVec<int32_t> {  // shuffle masks
  typedef int32_t type __attribute__((vector_size(16)));
};
template <>
struct RawVec<int64_t> {
  typedef int64_t type __attribute__((vector_size(16)));
};
template <typename T>
struct Vec {
  using Raw = typename RawVec<T>::type;
  static constexpr int size() { return int(16 / sizeof(T)); }
  Raw v;
  Vec() = default;
  Vec(Raw r) : v(r) {}
  // s - 0 is s for every s: a bare broadcast (Raw{} + s added a zero, turning -0 into +0)
  explicit Vec(T s) : v(s - Raw{}) {}
  static Vec loadu(const T* p) {
    Raw r;
    std::memcpy(&r, p, sizeof(r));  // unaligned load
    return r;
  }
  void store(T* p) const { std::memcpy(p, &v, sizeof(v)); }
};
template <typename T>
inline Vec<T> operator+(Vec<T> a, Vec<T> b) { return typename Vec<T>::Raw(a.v + b.v); }
template <typename T>
inline Vec<T> operator*(Vec<T> a, Vec<T> b) { return typename Vec<T>::Raw(a.v * b.v); }
// Fused where the target has FMA and the compiler contracts (AArch64), else multiply then add.
template <typename T>
inline Vec<T> fmadd(Vec<T> a, Vec<T> b, Vec<T> c) { return typename Vec<T>::Raw(a.v * b.v + c.v); }
template <typename T>
inline Vec<T> fnmadd(Vec<T> a, Vec<T> b, Vec<T> c) { return typename Vec<T>::Raw(c.v - a.v * b.v); }
// out[i] = Vec(lane i of v) for every lane (no broadcast load on SSE2: one shuffle a lane;
// a lane read by subscript went through the integer registers)
#if defined(__clang__) || __GNUC__ >= 12
#define ADAPTIVE_CONV_SIMD_SPLAT4(v, i) __builtin_shufflevector(v, v, i, i, i, i)
#define ADAPTIVE_CONV_SIMD_SPLAT2(v, i) __builtin_shufflevector(v, v, i, i)
#else
#define ADAPTIVE_CONV_SIMD_SPLAT4(v, i) __builtin_shuffle(v, RawVec<int32_t>::type{i, i, i, i})
#define ADAPTIVE_CONV_SIMD_SPLAT2(v, i) __builtin_shuffle(v, RawVec<int64_t>::type{i, i})
#endif
inline void broadcast_lanes(Vec<float> v, Vec<float>* out) {
  out[0] = Vec<float>::Raw(ADAPTIVE_CONV_SIMD_SPLAT4(v.v, 0));
  out[1] = Vec<float>::Raw(ADAPTIVE_CONV_SIMD_SPLAT4(v.v, 1));
  out[2] = Vec<float>::Raw(ADAPTIVE_CONV_SIMD_SPLAT4(v.v, 2));
  out[3] = Vec<float>::Raw(ADAPTIVE_CONV_SIMD_SPLAT4(v.v, 3));
}
inline void broadcast_lanes(Vec<double> v, Vec<double>* out) {
  out[0] = Vec<double>::Raw(ADAPTIVE_CONV_SIMD_SPLAT2(v.v, 0));
  out[1] = Vec<double>::Raw(ADAPTIVE_CONV_SIMD_SPLAT2(v.v, 1));
}
#if defined(ADAPTIVE_CONV_SIMD_SSE2)
// An empty asm statement that takes v in a register and gives it back "changed": GCC cannot
// move v's arithmetic across it. A loop that calls it on its accumulators after every step
// keeps its steps in source order (GCC otherwise emitted each accumulator's whole chain of
// additions in one run, and the chain's latency then set the pace).
template <typename T>
inline void keep_step_order(Vec<T>& v) { asm volatile("" : "+x"(v.v)); }
#endif
// min(x, hi) and max(x, lo) that keep a NaN x: one minps/maxps (second operand on
// NaN) or fmin/fmax (NaN on NaN); elsewhere a comparison, false for NaN x.
inline Vec<float> clamp_max(Vec<float> x, Vec<float> hi) {
#if defined(__SSE2__)
  return Vec<float>::Raw(_mm_min_ps(__m128(hi.v), __m128(x.v)));
#elif defined(__ARM_NEON)
  return Vec<float>::Raw(vminq_f32(float32x4_t(x.v), float32x4_t(hi.v)));
#else
  return Vec<float>::Raw(x.v > hi.v ? hi.v : x.v);
#endif
}
inline Vec<float> clamp_min(Vec<float> x, Vec<float> lo) {
#if defined(__SSE2__)
  return Vec<float>::Raw(_mm_max_ps(__m128(lo.v), __m128(x.v)));
#elif defined(__ARM_NEON)
  return Vec<float>::Raw(vmaxq_f32(float32x4_t(x.v), float32x4_t(lo.v)));
#else
  return Vec<float>::Raw(x.v < lo.v ? lo.v : x.v);
#endif
}
// 1/q, valid for q in [1, 2^64] (the tanh needs [1, 420]; [1.3e6, 5.4e8] on SSE2): the
// target's reciprocal estimate (rcpps: 1.5 * 2^-12; frecpe + one step: 2^-16), else an
// exponent-flip bit estimate (1/8) with three Newton steps (2^-24); reciprocal() adds one more step.
// ADAPTIVE_CONV_SIMD_GENERIC_RECIPROCAL forces the last, so x86 tests can check it.
inline Vec<float> reciprocal_estimate(Vec<float> q) {
#if defined(__SSE2__) && !defined(ADAPTIVE_CONV_SIMD_GENERIC_RECIPROCAL)
  return Vec<float>::Raw(_mm_rcp_ps(__m128(q.v)));
#elif defined(__ARM_NEON) && !defined(ADAPTIVE_CONV_SIMD_GENERIC_RECIPROCAL)
  const float32x4_t q4 = float32x4_t(q.v), e = vrecpeq_f32(q4);
  return Vec<float>::Raw(vmulq_f32(e, vrecpsq_f32(q4, e)));  // frecps: 2 - q e
#else
  typedef int32_t RawInt __attribute__((vector_size(16)));
  Vec<float> r = Vec<float>::Raw(RawInt{} + 0x7EF311C3 - RawInt(q.v));  // bits reinterpreted
  for (int step = 0; step < 3; ++step) r = fmadd(r, fnmadd(q, r, Vec<float>(1.0f)), r);
  return r;
#endif
}
#endif

// ---------------------------------------------------------------- built on the above

// 1/q without a division: the estimate and one Newton step, r + r (1 - q r), which
// squares its relative error (2^-14 -> 2^-28, 1.5 * 2^-12 -> 2^-23.2). Exact division
// costs a divider that is slow and not pipelined on many cores (vdivps zmm: one per 10
// cycles on Sapphire Rapids by llvm-mca).
inline Vec<float> reciprocal(Vec<float> q) {
  const Vec<float> r = reciprocal_estimate(q);
  return fmadd(r, fnmadd(q, r, Vec<float>(1.0f)), r);
}

// The tanh's quotient c p / q (q in [1, 420]) is c p times reciprocal(q), except on SSE2.
// There, without FMA, the estimate and Newton step are five instructions on the arithmetic
// ports against one divps, and the division measured faster: the portable mid-64 forward
// took 126 ms instead of 146 (one thread, AMD EPYC Zen 5, 2026-12-06), and llvm-mca-14
// gives the portable tanh 15.0 instead of 20.1 cycles on sapphirerapids and 10.4 instead
// of 13.1 on znver3 (benchmarks/results/llvm_mca_20261206.md). NEON keeps the estimate:
// fdiv is slow on most Arm cores.
#if defined(ADAPTIVE_CONV_SIMD_SSE2) && !defined(ADAPTIVE_CONV_SIMD_GENERIC_RECIPROCAL)
#define ADAPTIVE_CONV_SIMD_TANH_DIVIDES 1
#endif

// float32 tanh(x) = x P(x^2) / Q(x^2), a (4,4) rational fitted (weighted least squares
// iterated towards minimax) to tanh for |x| <= kTanhClamp: relative error 2e-8 in exact
// arithmetic, under 1e-6 in float32 (tests/test_cpu_kernel.py sweeps
// the float32 range against float64). It is exact at +-0 and on subnormals
// (P(0) = Q(0) = 1), and clamp_min/max keep NaN in every build.
// Saturation: x is clamped to +-kTanhClamp (float32 tanh is 1 - 6e-8 or 1 from there on,
// also for +-Inf). The SSE2 build clamps x^2 to kTanhClamp^2 instead, one min rather
// than a min and a max: past the clamp x P / Q = x tanh(9) / 9 exceeds 1 in magnitude (also
// for +-Inf, x^2 = Inf), and the final clamp to [-1, 1], which the rational's few-ulp
// overshoot near 9 needs anyway, returns +-1; below it the result is the same. On SSE2 the
// min/max share two pipes with the additions: mid-64 forward 125 -> 117 ms (one thread, AMD
// EPYC Zen 5, 2026-12-06). The other builds keep the two-sided clamp: with the one-sided,
// GCC spilled in the AVX-512 7x7 forward (depthwise-k7: 4.2 -> 7.4 ms).
constexpr float kTanhClamp = 9.0f;
constexpr float kTanhP[5] = {1.0f, 0.13381031155586243f, 0.0034955954179167747f,
                             2.060919359792024e-05f, 1.3354804373477691e-08f};
constexpr float kTanhQ[5] = {1.0f, 0.4671434760093689f, 0.025877010077238083f,
                             0.0003285646380390972f, 7.776619668220519e-07f};

#if defined(ADAPTIVE_CONV_SIMD_SSE2)
// SSE2: the tanh's constants as whole vectors in memory, 16-byte aligned, so that an
// instruction can take one as its memory operand (see tanh_each). Q4 divides P and Q, so Q's
// s^4 term needs no multiplication (forward 110 -> 107 ms, one thread, AMD EPYC Zen 5,
// 2026-12-06); q is then in [1 / Q4, 420 / Q4] = [1.3e6, 5.4e8]. `monic`: P4 = Q3 = 1 as well
// (the scaled tanh below).
struct alignas(16) TanhConstants {
  RawVec<float>::type t_max, minus_t_max, s_max, p[5], q[4];
  bool monic;
};
constexpr RawVec<float>::type splat4(float c) { return RawVec<float>::type{c, c, c, c}; }
constexpr float kTanhOverQ4 = float(1.0 / double(kTanhQ[4]));
inline constexpr TanhConstants kTanhConstants = {
    splat4(1.0f),
    splat4(-1.0f),
    splat4(kTanhClamp * kTanhClamp),
    {splat4(kTanhP[0] * kTanhOverQ4), splat4(kTanhP[1] * kTanhOverQ4), splat4(kTanhP[2] * kTanhOverQ4),
     splat4(kTanhP[3] * kTanhOverQ4), splat4(kTanhP[4] * kTanhOverQ4)},
    {splat4(kTanhQ[0] * kTanhOverQ4), splat4(kTanhQ[1] * kTanhOverQ4), splat4(kTanhQ[2] * kTanhOverQ4),
     splat4(kTanhQ[3] * kTanhOverQ4)},
    false};

#if defined(ADAPTIVE_CONV_SIMD_TANH_DIVIDES)
#define ADAPTIVE_CONV_SIMD_SCALED_TANH 1
// The scaled tanh: t' = gamma tanh(x), computed from u = x / sqrt(beta), with the same
// rational in the variable s = u^2 = x^2 / beta. beta = Q3 / Q4 and a common factor of P and
// Q make Q3 = Q4 = 1, and gamma = Q4 / (P4 sqrt(beta)) makes P4 = 1: two multiplications
// fewer than tanh (8 instead of 10). A kernel that can take its argument pre-scaled (the
// forward's sigma rows: scaled weights and kernel bias) and its result scaled (y: scaled bias,
// then y / gamma) saves them. Relative error against float64 under 4e-7 for |x| >= 1e-30 (the
// plain tanh: 3.5e-7; below 1e-30, u P0 underflows into subnormals and the relative error
// grows, the absolute one stays under 1e-36). Only where the tanh divides: its q is in
// [4e-5, 1.2], outside reciprocal()'s range.
namespace scaled_tanh {
constexpr double sqrt_newton(double v) {
  double r = v > 1 ? v : 1;
  for (int i = 0; i < 64; ++i) r = 0.5 * (r + v / r);
  return r;
}
constexpr double kBeta = double(kTanhQ[3]) / double(kTanhQ[4]);
constexpr double kCommon = 1 / (double(kTanhQ[3]) * kBeta * kBeta * kBeta);
constexpr double kSqrtBeta = sqrt_newton(kBeta);
constexpr double kGamma = double(kTanhQ[4]) / (double(kTanhP[4]) * kSqrtBeta);
constexpr double kPowBeta[5] = {1, kBeta, kBeta * kBeta, kBeta * kBeta * kBeta, kBeta * kBeta * kBeta * kBeta};
constexpr float p(int i) { return float(kGamma * kSqrtBeta * kCommon * double(kTanhP[i]) * kPowBeta[i]); }
constexpr float q(int i) { return float(kCommon * double(kTanhQ[i]) * kPowBeta[i]); }
}  // namespace scaled_tanh
constexpr float kScaledTanhArgScale = float(1 / scaled_tanh::kSqrtBeta);  // u = x * this
constexpr float kScaledTanhOutScale = float(scaled_tanh::kGamma);         // t' = this * tanh(x)
inline constexpr TanhConstants kScaledTanhConstants = {
    splat4(float(scaled_tanh::kGamma)),
    splat4(-float(scaled_tanh::kGamma)),
    splat4(float(double(kTanhClamp) * double(kTanhClamp) / scaled_tanh::kBeta)),
    {splat4(scaled_tanh::p(0)), splat4(scaled_tanh::p(1)), splat4(scaled_tanh::p(2)), splat4(scaled_tanh::p(3)),
     splat4(1.0f)},
    {splat4(scaled_tanh::q(0)), splat4(scaled_tanh::q(1)), splat4(scaled_tanh::q(2)), splat4(1.0f)},
    true};
#endif

// x[i] = tanh(x[i]) for N vectors (K: kTanhConstants), or x[i] = gamma tanh(sqrt(beta) x[i])
// (K: kScaledTanhConstants), each step of the evaluation done for all N before the next. The
// result is the same, bit for bit, for every N.
// - Estrin's scheme, (P0 + P1 s) + s^2 ((P2 + P3 s) + P4 s^2): one multiplication more than
//   Horner's, 3 dependent multiply-adds instead of 4. The SSE2 kernels wait on the tanh's
//   latency (without FMA a multiply-add is two dependent instructions): mid-64 forward
//   115 -> 110 ms, backward 235 -> 225 (one thread, AMD EPYC Zen 5, 2026-12-06). With FMA
//   the extra multiplication cost more than the latency saved (AVX2 forward 49 -> 51 ms).
// - Interleaved, the N dependency chains overlap, where one tanh after another waited on
//   the last one's latency: the kernels' tanh passes, 4 vectors at a time, took 8.1 (the
//   forward's y += tanh(sigma) X) and 10.0 (the backward's d sigma) cycles a vector instead
//   of 8.6 and 11.3 (benchmarks/results/sse2_tanh_passes.cpp, AMD EPYC Zen 5, 2026-12-06;
//   Horner's scheme interleaved: 8.7 and 10.5).
// - For N > 1, each step reads its constants from memory: an empty asm "changes" the
//   pointer to them, so GCC cannot keep them in registers across steps. Otherwise it held
//   them in registers and spilled the chains' values instead (in the kernels' passes, mid-64
//   backward, one thread: 214 -> about 200 ms; forward 101 -> 99-100). One vector at a time,
//   registers are faster (the forward's pass: 8.7 against 9.3 cycles a vector).
template <int N, const TanhConstants& K = kTanhConstants>
inline void tanh_each(Vec<float> (&x)[N]) {
  using V = Vec<float>;
  auto each = [&](auto&& step) {
    const TanhConstants* k = &K;
    if constexpr (N > 1) asm volatile("" : "+r"(k));
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) step(i, *k);
  };
  V s[N], s2[N], p[N], q[N], p_hi[N], q_hi[N];
  each([&](int i, const TanhConstants& k) { s[i] = clamp_max(x[i] * x[i], V(k.s_max)); });
  each([&](int i, const TanhConstants&) { s2[i] = s[i] * s[i]; });
  each([&](int i, const TanhConstants& k) { p_hi[i] = fmadd(V(k.p[3]), s[i], V(k.p[2])); });
  each([&](int i, const TanhConstants& k) {
    if constexpr (K.monic) q_hi[i] = s[i] + V(k.q[2]);
    else q_hi[i] = fmadd(V(k.q[3]), s[i], V(k.q[2]));
  });
  each([&](int i, const TanhConstants& k) {
    if constexpr (K.monic) p_hi[i] = s2[i] + p_hi[i];
    else p_hi[i] = fmadd(V(k.p[4]), s2[i], p_hi[i]);
  });
  each([&](int i, const TanhConstants&) { q_hi[i] = s2[i] + q_hi[i]; });
  each([&](int i, const TanhConstants& k) { p[i] = fmadd(V(k.p[1]), s[i], V(k.p[0])); });
  each([&](int i, const TanhConstants& k) { q[i] = fmadd(V(k.q[1]), s[i], V(k.q[0])); });
  each([&](int i, const TanhConstants&) { p[i] = fmadd(p_hi[i], s2[i], p[i]); });
  each([&](int i, const TanhConstants&) { q[i] = fmadd(q_hi[i], s2[i], q[i]); });
  // c p / q with c = x (the clamp is on s, see kTanhClamp); then |t| <= t_max: the rational
  // overshoots it by a few ulp near the clamp, and the backward needs 1 - t^2 >= 0
  each([&](int i, const TanhConstants&) {
#if defined(ADAPTIVE_CONV_SIMD_TANH_DIVIDES)
    x[i] = V::Raw((x[i] * p[i]).v / q[i].v);
#else
    x[i] = (x[i] * p[i]) * reciprocal(q[i]);
#endif
  });
  each([&](int i, const TanhConstants& k) { x[i] = clamp_min(clamp_max(x[i], V(k.t_max)), V(k.minus_t_max)); });
}

#if defined(ADAPTIVE_CONV_SIMD_SCALED_TANH)
// x[i] = kScaledTanhOutScale tanh(x[i] / kScaledTanhArgScale) (see kScaledTanhConstants)
template <int N>
inline void scaled_tanh_each(Vec<float> (&x)[N]) {
  tanh_each<N, kScaledTanhConstants>(x);
}
#endif

inline Vec<float> tanh(Vec<float> x) {
  Vec<float> v[1] = {x};
  tanh_each(v);
  return v[0];
}
#else
inline Vec<float> tanh(Vec<float> x) {
  using V = Vec<float>;
  const V c = clamp_min(clamp_max(x, V(kTanhClamp)), V(-kTanhClamp));
  const V s = c * c;
  V p = fmadd(V(kTanhP[4]), s, V(kTanhP[3]));
  V q = fmadd(V(kTanhQ[4]), s, V(kTanhQ[3]));
  p = fmadd(p, s, V(kTanhP[2]));
  q = fmadd(q, s, V(kTanhQ[2]));
  p = fmadd(p, s, V(kTanhP[1]));
  q = fmadd(q, s, V(kTanhQ[1]));
  p = fmadd(p, s, V(kTanhP[0]));
  q = fmadd(q, s, V(kTanhQ[0]));  // in [1, 420]: the reciprocal's range
  // the rational overshoots 1 by up to a few ulp near the clamp: keep |tanh| <= 1
  // (the backward's 1 - t^2 >= 0)
  const V t = (c * p) * reciprocal(q);
  return clamp_min(clamp_max(t, V(1.0f)), V(-1.0f));
}
#endif

// float64 tanh: the C library's, lane by lane (correctly rounded to within an ulp; the
// float64 results are the reference the float32 ones are checked against).
inline Vec<double> tanh(Vec<double> x) {
  constexpr int n = Vec<double>::size();
  double lanes[n];
  x.store(lanes);
  for (int i = 0; i < n; ++i) lanes[i] = std::tanh(lanes[i]);
  return Vec<double>::loadu(lanes);
}

// x[i] = tanh(x[i]) for N vectors, one after another (the SSE2 build's float32 overload
// above interleaves them)
template <typename T, int N>
inline void tanh_each(Vec<T> (&x)[N]) {
  for (int i = 0; i < N; ++i) x[i] = tanh(x[i]);
}

}  // namespace ADAPTIVE_CONV_SIMD_NS
}  // namespace adaptive_conv_ext::simd
