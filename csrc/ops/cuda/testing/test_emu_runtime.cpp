// Unit tests of the emulation runtime (emu_runtime.h): barriers make shared-memory
// exchanges correct, and the same kernels with a barrier left out give wrong results (the
// races the emulation must keep visible); a barrier that not every thread reaches aborts
// instead of hanging; a stack overflow is reported.
//
//   g++ -std=c++20 -O1 -I/usr/local/cuda/include -Icsrc
//       csrc/ops/cuda/testing/test_emu_runtime.cpp -o /tmp/test_emu_runtime && /tmp/test_emu_runtime
#include "emu_runtime.h"

#include <sys/wait.h>

namespace {
alignas(16) unsigned char smem[64 * 1024];
int g_failed = 0;

void check(bool ok, const char* name) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name);
  if (!ok) ++g_failed;
}

constexpr int kThreads = 128, kBlocks = 8;

// Each thread writes its value to shared memory, then reads the value of thread
// (t + shift) mod n. With `sync` false the barrier between write and read is missing.
// Returns the number of wrong outputs over the grid.
int neighbour_exchange(int shift, bool sync) {
  std::vector<float> out(kThreads * kBlocks, 0.f);
  auto kernel = [&] {
    float* s = reinterpret_cast<float*>(smem);
    const int t = static_cast<int>(threadIdx.x), b = static_cast<int>(blockIdx.x);
    s[t] = static_cast<float>(b * kThreads + t);
    if (sync) __syncthreads();
    const int src = (t + shift + kThreads) % kThreads;
    out[b * kThreads + t] = s[src];
  };
  ADAPTIVE_CONV_LAUNCH(kernel, kBlocks, kThreads, kThreads * 4, nullptr);
  int wrong = 0;
  for (int b = 0; b < kBlocks; ++b)
    for (int t = 0; t < kThreads; ++t)
      wrong += out[b * kThreads + t] != static_cast<float>(b * kThreads + (t + shift + kThreads) % kThreads);
  return wrong;
}

// A tiled sum: per round every thread stores one value, then thread 0 adds the tile. With
// `sync_after` false the barrier after the reads is missing: the next round's stores
// overwrite the tile before thread 0 has read it (a write-after-read race).
int tiled_sum(bool sync_after) {
  constexpr int kRounds = 4;
  float total = 0.f;
  auto kernel = [&] {
    float* s = reinterpret_cast<float*>(smem);
    const int t = static_cast<int>(threadIdx.x);
    for (int r = 0; r < kRounds; ++r) {
      s[t] = static_cast<float>(r * kThreads + t);
      __syncthreads();
      if (t == 0)
        for (int i = 0; i < kThreads; ++i) total += s[i];
      if (sync_after) __syncthreads();
    }
  };
  ADAPTIVE_CONV_LAUNCH(kernel, 1, kThreads, kThreads * 4, nullptr);
  const float n = kRounds * kThreads;
  return total != n * (n - 1) / 2;
}

// Lanes exchange through the warp's barrier and slots, as the instruction models do.
bool warp_reverse() {
  std::vector<uint64_t> got(96);
  auto kernel = [&] {
    const uint64_t mine = threadIdx.x;
    ::emu::warp_exchange(&mine, 1, [&](const uint64_t (*slot)[16]) { got[threadIdx.x] = slot[31 - ::emu::lane_id()][0]; });
  };
  ADAPTIVE_CONV_LAUNCH(kernel, 3, 96, 0, nullptr);
  for (unsigned t = 0; t < 96; ++t)
    if (got[t] != (t / 32) * 32 + 31 - t % 32) return false;
  return true;
}

// Runs f in a child process; returns its exit status (raw, as waitpid gives it).
template <typename F>
int in_child(F&& f) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    std::freopen("/dev/null", "w", stderr);
    f();
    std::_Exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

int deep(int n) {
  volatile char pad[4096];
  pad[0] = static_cast<char>(n);
  return n == 0 ? pad[0] : deep(n - 1) + pad[0];
}
}  // namespace

int main() {
  emu::g_smem = smem;
  emu::g_smem_size = sizeof smem;

  check(neighbour_exchange(1, true) == 0 && neighbour_exchange(-1, true) == 0 && neighbour_exchange(37, true) == 0,
        "write, __syncthreads, read a neighbour's value: right");
  // Both directions: running threads in index order would hide the race on the lower one.
  check(neighbour_exchange(1, false) > 0, "no barrier, read thread t+1's value: wrong (race visible)");
  check(neighbour_exchange(-1, false) > 0, "no barrier, read thread t-1's value: wrong (race visible)");
  check(tiled_sum(true) == 0, "tiled sum with both barriers: right");
  check(tiled_sum(false) != 0, "tiled sum without the barrier after the reads: wrong (race visible)");
  check(warp_reverse(), "warp exchange: lanes read the reversed lanes' words");

  float sum = 0.f;
  auto add = [&] { atomicAdd(&sum, 1.f); };
  ADAPTIVE_CONV_LAUNCH(add, 5, 64, 0, nullptr);
  check(sum == 320.f, "atomicAdd from every thread of every block");

  const int early_return = in_child([] {
    auto kernel = [] {
      if (threadIdx.x == 5) return;
      __syncthreads();
    };
    ADAPTIVE_CONV_LAUNCH(kernel, 1, 64, 0, nullptr);
  });
  check(WIFSIGNALED(early_return) && WTERMSIG(early_return) == SIGABRT,
        "a thread returns while the others wait at __syncthreads: deadlock reported (abort)");

  const int split_warp = in_child([] {
    auto kernel = [] {
      if (threadIdx.x < 16) {
        ::emu::g_warps[0]->bar.wait();
      } else {
        __syncthreads();
      }
    };
    ADAPTIVE_CONV_LAUNCH(kernel, 1, 32, 0, nullptr);
  });
  check(WIFSIGNALED(split_warp) && WTERMSIG(split_warp) == SIGABRT,
        "half a warp at the warp barrier, half at __syncthreads: deadlock reported (abort)");

  const int overflow = in_child([] {
    auto kernel = [] { deep(static_cast<int>(emu::detail::kStackBytes / 4096) + 16); };
    ADAPTIVE_CONV_LAUNCH(kernel, 1, 2, 0, nullptr);
  });
  check(WIFEXITED(overflow) && WEXITSTATUS(overflow) == 3, "stack overflow of a thread: caught by the guard page");

  std::printf("%s: %d failed runtime test(s)\n", g_failed ? "FAILED" : "PASSED", g_failed);
  return g_failed ? 1 : 0;
}
