// The CUDA language on the CPU, for the emulation of the kernels (emulate_kernels.cpp) and
// of the PTX instructions (test_ptx.cpp): every CUDA thread of a block is a std::thread,
// __syncthreads is a real barrier over the block, and each warp has a barrier of its own
// plus an exchange area through which the warp-wide instruction models (testing/ptx/*.h)
// pass registers between lanes. Include once per program, before the code under test.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#undef __global__
#undef __device__
#undef __shared__
#define __global__
#define __device__
#define __shared__
#define __launch_bounds__(...)
#define ADAPTIVE_CONV_EMULATION 1  // kernels/ptx.cuh: use the CPU instruction models

namespace emu {
struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local Dim3 t_thread, t_block;
inline Dim3 g_grid, g_blockdim;

class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lk(m_);
    const unsigned long gen = gen_;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
      cv_.notify_all();
    } else {
      cv_.wait(lk, [&] { return gen_ != gen; });
    }
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, count_ = 0;
  unsigned long gen_ = 0;
};
inline Barrier* g_barrier = nullptr;
inline void syncthreads() { g_barrier->wait(); }

// One warp: its barrier and one exchange slot of 16 words per lane.
struct Warp {
  explicit Warp(int lanes) : bar(lanes) {}
  Barrier bar;
  uint64_t slot[32][16] = {};
};
inline std::vector<std::unique_ptr<Warp>> g_warps;
inline int lane_id() { return static_cast<int>(t_thread.x % 32); }

// Warp-wide exchange: every lane posts n words, then read(slots) sees what all lanes
// posted; the second barrier keeps the slots until every lane has read them. Called by all
// lanes of the warp together, like the .sync.aligned instructions it models.
template <typename Read>
void warp_exchange(const uint64_t* mine, int n, Read&& read) {
  Warp& w = *g_warps[t_thread.x / 32];
  std::memcpy(w.slot[lane_id()], mine, n * sizeof(uint64_t));
  w.bar.wait();
  read(w.slot);
  w.bar.wait();
}

// Dynamic shared memory of the block (poisoned with NaN before each launch), if any.
inline unsigned char* g_smem = nullptr;
inline size_t g_smem_size = 0;
inline int g_optin = 227 * 1024;
inline long long g_launches = 0;

inline void launch(unsigned grid, int block, int smem, const std::function<void()>& body) {
  if (smem > g_optin || static_cast<size_t>(smem) > g_smem_size) {
    std::fprintf(stderr, "launch asks for %d bytes of shared memory (limit %d)\n", smem, g_optin);
    std::exit(2);
  }
  ++g_launches;
  if (g_smem != nullptr) std::memset(g_smem, 0xff, g_smem_size);  // NaN everywhere
  g_grid = Dim3{grid, 1, 1};
  g_blockdim = Dim3{static_cast<unsigned>(block), 1, 1};
  Barrier barrier(block);
  g_barrier = &barrier;
  g_warps.clear();
  for (int w = 0; w * 32 < block; ++w) g_warps.push_back(std::make_unique<Warp>(std::min(32, block - w * 32)));
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (int t = 0; t < block; ++t) {
    threads.emplace_back([&, t] {
      t_thread = Dim3{static_cast<unsigned>(t), 0, 0};
      for (unsigned b = 0; b < grid; ++b) {
        t_block = Dim3{b, 0, 0};
        body();
        barrier.wait();  // the next block reuses the shared memory
      }
    });
  }
  for (auto& th : threads) th.join();
  g_barrier = nullptr;
  g_warps.clear();
}
}  // namespace emu

#define threadIdx (::emu::t_thread)
#define blockIdx (::emu::t_block)
#define gridDim (::emu::g_grid)
#define blockDim (::emu::g_blockdim)
#define __syncthreads() ::emu::syncthreads()
#define ADAPTIVE_CONV_LAUNCH(kernel, grid, block, smem, stream, ...) \
  ::emu::launch((grid), (block), (smem), [&]() { kernel(__VA_ARGS__); })

using std::max;
using std::min;

template <typename T>
T __ldg(const T* p) {
  return *p;
}
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }

template <typename T, typename U>
T atomic_add_impl(T* p, T v) {
  U old = __atomic_load_n(reinterpret_cast<U*>(p), __ATOMIC_RELAXED);
  for (;;) {
    T f;
    std::memcpy(&f, &old, sizeof(T));
    const T nf = f + v;
    U nu;
    std::memcpy(&nu, &nf, sizeof(T));
    if (__atomic_compare_exchange_n(reinterpret_cast<U*>(p), &old, nu, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
      return f;
    }
  }
}
inline float atomicAdd(float* p, float v) { return atomic_add_impl<float, unsigned>(p, v); }
inline double atomicAdd(double* p, double v) { return atomic_add_impl<double, unsigned long long>(p, v); }
