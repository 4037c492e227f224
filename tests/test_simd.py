"""The CPU kernels' vector layer (csrc/ops/cpu/simd/vec.h), operation by operation
against scalar code: csrc/test/test_simd.cpp compiled with g++ once per instruction
set this machine can run, then run."""

import os
import platform
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
X86 = platform.machine().lower() in ("x86_64", "amd64")

# name -> (g++ flags, /proc/cpuinfo flags the binary needs)
BUILDS = {
    "portable": ([], []),
    # the portable build's fallback reciprocal (targets with neither SSE nor NEON)
    "portable-generic-reciprocal": (["-DADAPTIVE_CONV_SIMD_GENERIC_RECIPROCAL"], []),
}
if X86:
    BUILDS["avx2"] = (["-mavx2", "-mfma"], ["avx2", "fma"])
    BUILDS["avx512"] = (
        ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
        ["avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"],
    )


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.mark.parametrize("build", list(BUILDS))
def test_vector_ops_against_scalar(build, tmp_path):
    compiler = shutil.which("g++")
    assert compiler is not None, "g++ is needed to build the SIMD unit test"
    flags, needs = BUILDS[build]
    missing = [f for f in needs if f not in cpu_flags()]
    if missing:
        pytest.skip(f"this CPU lacks {missing}")
    exe = tmp_path / f"test_simd_{build}"
    cmd = [compiler, "-std=c++17", "-O3", "-Wall", "-Wextra", "-Werror", *flags,
           "-I", os.path.join(ROOT, "csrc"), os.path.join(ROOT, "csrc", "test", "test_simd.cpp"), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    isa = "portable" if build.startswith("portable") else build
    assert run.stdout.strip().splitlines()[-1].startswith(f"{isa} ok"), run.stdout


@pytest.mark.skipif(not X86, reason="the microbenchmarks use x86 inline assembly")
@pytest.mark.parametrize("name", ["sse2_ports.cpp", "sse2_tanh_passes.cpp"])
def test_result_microbenchmarks_compile(name):
    # benchmarks/results/ quotes their figures; they must keep building against vec.h
    compiler = shutil.which("g++")
    assert compiler is not None, "g++ is needed to build the microbenchmarks"
    cmd = [compiler, "-std=c++20", "-O2", "-Wall", "-Werror", "-fsyntax-only", "-I", os.path.join(ROOT, "csrc"),
           os.path.join(ROOT, "benchmarks", "results", name)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
