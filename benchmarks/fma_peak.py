"""This CPU's peak float32 multiply-add rate, one thread: a check on SPEC's CPU floor.

SPEC section 4 takes the machine's FMA rate from one thread's float32 sgemm, which
is right where torch's BLAS runs the CPU's widest vectors. Where it does not, the
floor sits below the machine's and the kernels read over 100% of it: MKL in the
torch 2.13 wheel runs AVX2 code on an AMD EPYC (Zen 5), 114 GFLOP/s per thread
against the 274 GFLOP/s of its AVX-512 FMAs (measured 2026-12-06). So the benchmarks
also report the peak that twelve independent chains of vfmadd231ps reach (the x86
FMA latency times its pipes is at most 12 vectors in flight on current cores), for
the widest instruction set the kernels run here: AVX-512, else AVX2+FMA.

The loop is inline assembly in a small C file, compiled with the C compiler on PATH
into a cache folder the first time (a few hundred ms); without a compiler, or off
x86-64 Linux, `peak_flops()` returns None and the reports say so.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

ITERS = 20_000_000  # 12 FMAs each: ~0.05 s at AVX-512 peak

_C_SOURCE = r"""
#define FMA12(R) \
  "vfmadd231ps %%" R "12, %%" R "13, %%" R "0\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "1\n\t" \
  "vfmadd231ps %%" R "12, %%" R "13, %%" R "2\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "3\n\t" \
  "vfmadd231ps %%" R "12, %%" R "13, %%" R "4\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "5\n\t" \
  "vfmadd231ps %%" R "12, %%" R "13, %%" R "6\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "7\n\t" \
  "vfmadd231ps %%" R "12, %%" R "13, %%" R "8\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "9\n\t" \
  "vfmadd231ps %%" R "12, %%" R "13, %%" R "10\n\t" "vfmadd231ps %%" R "12, %%" R "13, %%" R "11\n\t"
#define LOOP(R)                                                                                   \
  asm volatile("vxorps %%" R "12, %%" R "12, %%" R "12\n\tvxorps %%" R "13, %%" R "13, %%" R "13\n" \
               "1:\n\t" FMA12(R) "dec %0\n\tjnz 1b\n\tvzeroupper"                                    \
               : "+r"(n)::"memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",   \
                 "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13")
void fma_loop_avx512(long n) { LOOP("zmm"); }
void fma_loop_avx2(long n) { LOOP("ymm"); }
"""

LANES = {"avx512": 16, "avx2": 8}


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def kernel_isa() -> Optional[str]:
    """The widest instruction set the CPU kernels run here (ATEN_CPU_CAPABILITY narrows
    it, as it does the kernels' own choice), or None off x86-64 Linux."""
    if platform.machine() not in ("x86_64", "AMD64") or platform.system() != "Linux":
        return None
    flags = _cpu_flags()
    allowed = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    if "avx512f" in flags and allowed in ("", "avx512"):
        return "avx512"
    if {"avx2", "fma"} <= flags and allowed in ("", "avx512", "avx2"):
        return "avx2"
    return None


def _library() -> Optional[ctypes.CDLL]:
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None
    key = hashlib.sha256((_C_SOURCE + cc).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "adaptive-conv-ext"
    lib = cache / f"fma_peak-{key}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "fma_peak.c", Path(tmp) / "fma_peak.so"
            src.write_text(_C_SOURCE)
            done = subprocess.run([cc, "-O2", "-shared", "-fPIC", str(src), "-o", str(out)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                return None
            os.replace(out, lib)  # atomic: concurrent runs never load a half-written file
    return ctypes.CDLL(str(lib))


def peak_flops(reps: int = 5) -> Optional[Dict]:
    """{'isa', 'flops'}: the best of `reps` timings of ITERS x 12 vector FMAs on one
    thread, as float32 flop/s; None where it cannot be measured here."""
    isa = kernel_isa()
    lib = _library() if isa else None
    if lib is None:
        return None
    loop = getattr(lib, f"fma_loop_{isa}")
    loop.argtypes = [ctypes.c_long]
    loop(ITERS // 10)  # clocks up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        loop(ITERS)
        best = min(best, time.perf_counter() - t0)
    return {"isa": isa, "flops": 2.0 * LANES[isa] * 12 * ITERS / best}


if __name__ == "__main__":
    peak = peak_flops()
    print("FMA peak: not measurable here" if peak is None
          else f"FMA peak ({peak['isa']}), one thread: {peak['flops'] / 1e9:.1f} GFLOP/s")
