// Core cycles for the microbenchmarks beside this file (x86-64, GCC/Clang inline assembly).
#pragma once
#include <algorithm>
#include <chrono>

// nanoseconds per core cycle: a chain of dependent integer adds runs at one per cycle
inline double ns_per_cycle() {
  const long n = 100000000;
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; i += 8)
      asm volatile("addl $1,%%eax\n addl $1,%%eax\n addl $1,%%eax\n addl $1,%%eax\n"
                   "addl $1,%%eax\n addl $1,%%eax\n addl $1,%%eax\n addl $1,%%eax\n" ::: "eax");
    best = std::min(best, std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
  }
  return best / n;
}

// cycles per call of fn(), n calls, best of `reps`
template <typename Fn>
double cycles_per_call(double ns_cycle, long n, Fn fn, int reps = 5) {
  double best = 1e30;
  for (int rep = 0; rep < reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) fn();
    best = std::min(best, std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count());
  }
  return best / n / ns_cycle;
}
