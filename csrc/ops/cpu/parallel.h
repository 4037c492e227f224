// The thread pool of the CPU kernels behind a torch-free interface: the kernels
// (adaptive_conv2d_cpu_kernel_impl.h, compiled once per instruction set) include no
// libtorch header, so their objects do not depend on the torch they are built against
// and one build can share them with another (setup.py TORCH_FREE_SOURCES). The one
// definition, in adaptive_conv2d_cpu.cpp, runs the range on torch's own pool
// (torch::stable::parallel_for: OpenMP or torch's native threads).
#pragma once
#include <cstdint>

namespace adaptive_conv_ext::cpu {

// fn(ctx, begin, end) for disjoint sub-ranges covering [begin, end), each of at least
// `grain` items where possible, on torch's intra-op threads.
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);
void parallel_for_range(int64_t begin, int64_t end, int64_t grain, void* ctx, RangeFn fn);

// f(begin, end) as above, for any callable.
template <typename F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  parallel_for_range(begin, end, grain, const_cast<void*>(static_cast<const void*>(&f)),
                     [](void* ctx, int64_t b, int64_t e) { (*static_cast<const F*>(ctx))(b, e); });
}

}  // namespace adaptive_conv_ext::cpu
