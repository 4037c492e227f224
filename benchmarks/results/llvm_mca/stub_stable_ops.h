#pragma once
#include <cstdint>
namespace torch::stable {
template <class F> inline void parallel_for(int64_t b, int64_t e, int64_t, const F& f) { if (b < e) f(b, e); }
}
