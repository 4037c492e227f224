// llvm-mca input: the float32 tanh over an array, one vector per iteration.
#include "ops/cpu/simd/vec.h"
namespace s = adaptive_conv_ext::simd;
using V = s::Vec<float>;
#ifdef WITH_DIVISION
// the previous form: (c p) / q
static inline V tanh_div(V x) {
  const V c = s::clamp_min(s::clamp_max(x, V(s::kTanhClamp)), V(-s::kTanhClamp));
  const V sq = c * c;
  V p = s::fmadd(V(s::kTanhP[4]), sq, V(s::kTanhP[3])), q = s::fmadd(V(s::kTanhQ[4]), sq, V(s::kTanhQ[3]));
  p = s::fmadd(p, sq, V(s::kTanhP[2])); q = s::fmadd(q, sq, V(s::kTanhQ[2]));
  p = s::fmadd(p, sq, V(s::kTanhP[1])); q = s::fmadd(q, sq, V(s::kTanhQ[1]));
  p = s::fmadd(p, sq, V(s::kTanhP[0])); q = s::fmadd(q, sq, V(s::kTanhQ[0]));
  V t;
  t.v = (c * p).v / q.v;
  return s::clamp_min(s::clamp_max(t, V(1.0f)), V(-1.0f));
}
#define TANH tanh_div
#else
#define TANH s::tanh
#endif
void tanh_array(const float* in, float* out, long n) {
  for (long i = 0; i < n; i += V::size()) {
    asm volatile("# LLVM-MCA-BEGIN tanh");
    TANH(V::loadu(in + i)).store(out + i);
    asm volatile("# LLVM-MCA-END tanh");
  }
}
