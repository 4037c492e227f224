// The CUDA language on the CPU, for the emulation of the kernels (emulate_kernels.cpp) and
// of the PTX instructions (test_ptx.cpp). Every CUDA thread of a block is a cooperative
// user-space context (a fiber with its own stack) on the calling OS thread; the blocks of a
// grid run one after the other. A fiber runs until it waits at a barrier (__syncthreads, or
// the barrier of its warp) or returns; then the next fiber runs. Each warp has a barrier of
// its own plus an exchange area through which the warp-wide instruction models
// (testing/ptx/*.h) pass registers between lanes. Include once per program, before the code
// under test.
//
// Why fibers and not one OS thread per CUDA thread: the same barrier semantics, without a
// kernel-level context switch (futex wake-ups, scheduler) at every barrier of every thread;
// the switch here is a handful of register moves and no system call.
//
// Races stay visible: between two barrier releases, each ready fiber runs alone until its
// next barrier, in an order drawn afresh for every round (a seeded shuffle, the same in
// every run of the program). A read of shared memory that lacks the barrier after the write
// it depends on therefore sees the NaN poison or a stale value whenever its writer is drawn
// later, which happens in about half the rounds; a write that lacks the barrier after the
// reads of the previous phase overwrites what a fiber drawn later still has to read.
// Barriers wait for all threads of the block (or warp): a fiber that returns while others
// wait, or warps waiting at different barriers, is reported as a deadlock and aborts.
// Stacks have a guard page: an overflow is reported, not silent corruption.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
extern "C" void AnnotateIgnoreReadsBegin(const char* f, int l);
extern "C" void AnnotateIgnoreReadsEnd(const char* f, int l);
extern "C" void AnnotateIgnoreWritesBegin(const char* f, int l);
extern "C" void AnnotateIgnoreWritesEnd(const char* f, int l);
#endif

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
// The running fiber's indices: the scheduler sets them before it switches to a fiber.
inline Dim3 t_thread, t_block;
inline Dim3 g_grid, g_blockdim;

namespace detail {

// --- ThreadSanitizer (-fsanitize=thread): every fiber is a thread of its own to TSAN, and
// the only happens-before edges between fibers are the ones CUDA has: a barrier (all
// arrivals before all departures), the end of a block (before the next block; blocks here
// reuse one shared-memory buffer) and the launch (host before and after). A missing barrier
// is then reported as a data race. The runtime's own bookkeeping is hidden from TSAN.
#if defined(__SANITIZE_THREAD__)
struct Tsan {
  static void* current() { return __tsan_get_current_fiber(); }
  static void* create() { return __tsan_create_fiber(0); }
  static void switch_to(void* fiber) { __tsan_switch_to_fiber(fiber, __tsan_switch_to_fiber_no_sync); }
  static void release(const void* a) { __tsan_release(const_cast<void*>(a)); }
  static void acquire(const void* a) { __tsan_acquire(const_cast<void*>(a)); }
  static void ignore_begin() {
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__);
  }
  static void ignore_end() {
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__);
  }
};
#else
struct Tsan {
  static void* current() { return nullptr; }
  static void* create() { return nullptr; }
  static void switch_to(void*) {}
  static void release(const void*) {}
  static void acquire(const void*) {}
  static void ignore_begin() {}
  static void ignore_end() {}
};
#endif

// --- machine context switch ---------------------------------------------------------------
#if defined(__x86_64__)
// emu_fiber_switch(&save_sp, new_sp): pushes the callee-saved registers and the SSE/x87
// control words on the current stack, stores the stack pointer in *save_sp, loads new_sp
// and pops the same from there. Weak: the header may be included in several objects.
asm(R"(
  .text
  .weak emu_fiber_switch
  .type emu_fiber_switch, @function
emu_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_fiber_switch, .-emu_fiber_switch
  .weak emu_fiber_start
  .type emu_fiber_start, @function
emu_fiber_start:
  callq *%r12
  ud2
  .size emu_fiber_start, .-emu_fiber_start
)");
extern "C" void emu_fiber_switch(void** save_sp, void* new_sp);
extern "C" void emu_fiber_start();

struct MachineContext {
  void* sp = nullptr;
};
// tsan_to: the target's TSAN fiber; TSAN switches before the target's stack is read.
inline void switch_context(MachineContext& from, const MachineContext& to, void* tsan_to) {
  void* sp = to.sp;
  Tsan::switch_to(tsan_to);
  emu_fiber_switch(&from.sp, sp);
}
// A stack whose first switch "returns" into emu_fiber_start, which calls entry (in r12).
inline void make_context(MachineContext& c, unsigned char* lo, size_t size, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(lo + size) & ~uintptr_t{15};
  // The return slot: after ret, rsp % 16 == 0, so the call enters entry with rsp % 16 == 8.
  auto* s = reinterpret_cast<uint64_t*>(top - 24);
  s[0] = reinterpret_cast<uint64_t>(&emu_fiber_start);
  s[-1] = 0;                                     // rbp
  s[-2] = 0;                                     // rbx
  s[-3] = reinterpret_cast<uint64_t>(entry);     // r12
  s[-4] = s[-5] = s[-6] = 0;                     // r13, r14, r15
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0; fnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
  auto* ctl = reinterpret_cast<uint32_t*>(&s[-7]);
  ctl[0] = mxcsr;
  ctl[1] = fpucw;
  c.sp = &s[-7];
}
#else
// Portable fallback: correct, but swapcontext makes a system call (signal mask) per switch.
struct MachineContext {
  ucontext_t uc;
};
inline void switch_context(MachineContext& from, const MachineContext& to, void* tsan_to) {
  Tsan::switch_to(tsan_to);
  swapcontext(&from.uc, &to.uc);
}
inline void make_context(MachineContext& c, unsigned char* lo, size_t size, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = lo;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, entry, 0);
}
#endif

// --- stacks ---------------------------------------------------------------------------------
// Usable bytes per fiber. The deepest fiber of `emulate_kernels bwdmma` uses 4.6 KiB at
// -O1 (EMU_STACK_REPORT=1 prints the figure); the margin covers -O0 and sanitizers. Pages
// are committed only when touched, so the reservation costs address space only. The guard
// is larger than one frame of the kernels, so an overflow cannot step over it.
inline constexpr size_t kStackBytes = 256 * 1024;
inline constexpr size_t kGuardBytes = 64 * 1024;

struct Stack {
  unsigned char* map = nullptr;  // kGuardBytes of guard first, then kStackBytes usable
  unsigned char* lo() const { return map + kGuardBytes; }
};

inline std::vector<Stack>& stacks() {
  static auto* s = new std::vector<Stack>;  // never destroyed: read by the exit report
  return *s;
}

inline void on_segv(int, siginfo_t* info, void*) {
  auto* a = static_cast<unsigned char*>(info->si_addr);
  for (const Stack& s : stacks()) {
    if (a >= s.map && a < s.lo()) {
      static const char msg[] = "emu_runtime: stack overflow of an emulated CUDA thread (raise kStackBytes)\n";
      ssize_t ignored = write(2, msg, sizeof msg - 1);
      (void)ignored;
      _exit(3);
    }
  }
  signal(SIGSEGV, SIG_DFL);  // not ours: fault again with the default action
}

// The overflow is caught on an alternate signal stack (the faulting one is unusable).
inline void install_overflow_handler() {
  static bool done = false;
  if (done) return;
  done = true;
  static std::vector<unsigned char> alt(64 * 1024);
  stack_t ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
}

inline Stack new_stack() {
  install_overflow_handler();
  Stack s;
  void* m = mmap(nullptr, kGuardBytes + kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (m == MAP_FAILED || mprotect(m, kGuardBytes, PROT_NONE) != 0) {
    std::perror("emu_runtime: fiber stack");
    std::exit(2);
  }
  s.map = static_cast<unsigned char*>(m);
  stacks().push_back(s);
  return s;
}

// Deepest use of any fiber stack so far: the lowest non-zero byte (fresh pages are zero).
// Printed at exit when EMU_STACK_REPORT is set, to size kStackBytes.
inline size_t stack_high_water() {
  size_t most = 0;
  for (const Stack& s : stacks()) {
    size_t i = 0;
    while (i < kStackBytes && s.lo()[i] == 0) ++i;
    most = std::max(most, kStackBytes - i);
  }
  return most;
}

// --- fibers and the scheduler ---------------------------------------------------------------
class BarrierBase;

struct Fiber {
  MachineContext ctx;
  Stack stack;
  unsigned tid = 0;
  bool done = false;
  const BarrierBase* waiting = nullptr;  // the barrier this fiber waits at, if any
  unsigned long gen = 0;                 // its generation when this fiber arrived
  void* tsan = nullptr;                  // its TSAN fiber (-fsanitize=thread only)
};

struct Scheduler {
  MachineContext main;
  std::vector<std::unique_ptr<Fiber>> fibers;  // kept across launches (stacks are reused)
  Fiber* current = nullptr;
  void* main_tsan = nullptr;
  const std::function<void()>* body = nullptr;
  char block_end[2] = {};  // TSAN sync objects: block b's fibers release into [b % 2]
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  uint64_t next() {  // xorshift64
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  }
};
inline Scheduler g_sched;

// Back to the scheduler; returns when the scheduler picks this fiber again.
// Called and returns with TSAN's ignore region open (the runtime's own bookkeeping).
inline void yield() {
  Fiber* f = g_sched.current;
  switch_context(f->ctx, g_sched.main, g_sched.main_tsan);
}

[[noreturn]] inline void fiber_main() {
  Tsan::ignore_begin();
  for (;;) {  // one pass per block this fiber is resumed for
    const unsigned b = t_block.x;
    Tsan::ignore_end();
    Tsan::acquire(&g_sched.block_end[(b + 1) % 2]);  // the previous block (or the host)
    (*g_sched.body)();
    Tsan::release(&g_sched.block_end[b % 2]);
    Tsan::ignore_begin();
    g_sched.current->done = true;
    yield();
  }
}

class BarrierBase {
 public:
  explicit BarrierBase(int n) : n_(n) {}
  bool released(unsigned long gen) const { return gen_ != gen; }
  void wait() {
    Fiber* f = g_sched.current;
    if (f == nullptr) {
      std::fprintf(stderr, "emu_runtime: barrier outside a launch\n");
      std::abort();
    }
    Tsan::release(&sync_[gen_ % 2]);
    Tsan::ignore_begin();
    const unsigned long gen = gen_;
    f->waiting = this;
    f->gen = gen;
    if (++count_ == n_) {
      count_ = 0;
      ++gen_;
    }
    yield();  // even the last to arrive: the next round's order is drawn over all of them
    f->waiting = nullptr;
    Tsan::ignore_end();
    // Generation gen + 2 cannot start before every fiber has left gen: no stale arrivals.
    Tsan::acquire(&sync_[gen % 2]);
  }
  int arrived() const { return count_; }
  int size() const { return n_; }

 private:
  int n_, count_ = 0;
  unsigned long gen_ = 0;
  char sync_[2] = {};  // TSAN sync objects of the even and odd generations
};

[[noreturn]] inline void deadlock(int block_threads) {
  std::fprintf(stderr, "emu_runtime: deadlock in block %u: ", t_block.x);
  int done = 0;
  for (int t = 0; t < block_threads; ++t) done += g_sched.fibers[t]->done;
  std::fprintf(stderr, "%d thread(s) returned, the others wait at barriers:", done);
  const BarrierBase* seen = nullptr;
  for (int t = 0; t < block_threads; ++t) {
    const BarrierBase* b = g_sched.fibers[t]->waiting;
    if (b != nullptr && b != seen) {
      std::fprintf(stderr, " [%d of %d arrived, first thread %d]", b->arrived(), b->size(), t);
      seen = b;
    }
  }
  std::fprintf(stderr, "\n");
  std::abort();
}

// Runs block t_block to the end: rounds of the ready fibers in a freshly shuffled order.
inline void run_block(int n) {
  std::vector<Fiber*> ready;
  ready.reserve(n);
  for (int t = 0; t < n; ++t) g_sched.fibers[t]->done = false;
  for (int live = n; live > 0;) {
    ready.clear();
    for (int t = 0; t < n; ++t) {
      Fiber* f = g_sched.fibers[t].get();
      if (!f->done && (f->waiting == nullptr || f->waiting->released(f->gen))) ready.push_back(f);
    }
    if (ready.empty()) deadlock(n);
    for (size_t i = ready.size(); i > 1; --i) std::swap(ready[i - 1], ready[g_sched.next() % i]);
    for (Fiber* f : ready) {
      g_sched.current = f;
      t_thread = Dim3{f->tid, 0, 0};
      switch_context(g_sched.main, f->ctx, f->tsan);
      live -= f->done;
    }
  }
  g_sched.current = nullptr;
}

inline void ensure_fibers(int n) {
  while (static_cast<int>(g_sched.fibers.size()) < n) {
    auto f = std::make_unique<Fiber>();
    f->tid = static_cast<unsigned>(g_sched.fibers.size());
    f->stack = new_stack();
    f->tsan = Tsan::create();
    make_context(f->ctx, f->stack.lo(), kStackBytes, &fiber_main);
    g_sched.fibers.push_back(std::move(f));
  }
}

struct StackReport {
  ~StackReport() {
    if (std::getenv("EMU_STACK_REPORT") != nullptr) {
      std::fprintf(stderr, "emu_runtime: deepest fiber stack %zu bytes of %zu\n", stack_high_water(), kStackBytes);
    }
  }
};
inline StackReport g_stack_report;
}  // namespace detail

// A barrier over n emulated threads (the block's, or one warp's lanes).
using Barrier = detail::BarrierBase;
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
  if (block <= 0 || block > 1024) {
    std::fprintf(stderr, "launch asks for %d threads per block (1..1024)\n", block);
    std::exit(2);
  }
  if (detail::g_sched.body != nullptr) {
    std::fprintf(stderr, "launch from inside a launch\n");
    std::exit(2);
  }
  ++g_launches;
  if (g_smem != nullptr) std::memset(g_smem, 0xff, g_smem_size);  // NaN everywhere
  g_grid = Dim3{grid, 1, 1};
  g_blockdim = Dim3{static_cast<unsigned>(block), 1, 1};
  detail::ensure_fibers(block);
  detail::g_sched.body = &body;
  detail::g_sched.main_tsan = detail::Tsan::current();
  detail::Tsan::release(&detail::g_sched.block_end[1]);  // the host's writes, before block 0
  detail::Tsan::ignore_begin();
  // A block ends only when every fiber has returned, so no barrier carries arrivals over
  // into the next block.
  Barrier barrier(block);
  g_barrier = &barrier;
  g_warps.clear();
  for (int w = 0; w * 32 < block; ++w) g_warps.push_back(std::make_unique<Warp>(std::min(32, block - w * 32)));
  for (unsigned b = 0; b < grid; ++b) {
    t_block = Dim3{b, 0, 0};
    detail::run_block(block);
  }
  detail::Tsan::ignore_end();
  detail::Tsan::acquire(&detail::g_sched.block_end[(grid + 1) % 2]);  // the last block, before the host
  detail::g_sched.body = nullptr;
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

// One OS thread runs all fibers and none is switched out inside an atomicAdd, so it needs no
// retry loop; the atomic accesses are for -fsanitize=thread, which must see them as atomics.
template <typename T, typename U>
T atomic_add_impl(T* p, T v) {
  static_assert(sizeof(T) == sizeof(U), "the integer carries the float's bits");
  const U bits = __atomic_load_n(reinterpret_cast<U*>(p), __ATOMIC_RELAXED);
  T old;
  std::memcpy(&old, &bits, sizeof(T));
  const T sum = old + v;
  U next;
  std::memcpy(&next, &sum, sizeof(T));
  __atomic_store_n(reinterpret_cast<U*>(p), next, __ATOMIC_RELAXED);
  return old;
}
inline float atomicAdd(float* p, float v) { return atomic_add_impl<float, unsigned>(p, v); }
inline double atomicAdd(double* p, double v) { return atomic_add_impl<double, unsigned long long>(p, v); }
