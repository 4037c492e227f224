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


def build_and_run(compile_cmd, program, exe, expect, runner=()):
    """Compiles csrc/test/<program> with compile_cmd (compiler and flags) into exe, runs it
    (through runner, an emulator, if given) and checks that its last line starts with expect."""
    cmd = [*compile_cmd, "-I", os.path.join(ROOT, "csrc"), os.path.join(ROOT, "csrc", "test", program), "-o", str(exe)]
    built = subprocess.run(cmd, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    run = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1].startswith(expect), run.stdout


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


SIMD_TEST_FLAGS = ["-std=c++17", "-O3", "-Wall", "-Wextra", "-Werror"]
# The portable kernels on their own (csrc/test/test_cpu_kernels.cpp): the same warnings, less a
# false positive of GCC's loop analysis in the inlined kernels.
KERNEL_TEST_FLAGS = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-aggressive-loop-optimizations"]
# AArch64 (the NEON build, the portable build's target): a cross compiler and qemu's user mode.
AARCH64_GXX = shutil.which("aarch64-linux-gnu-g++")
QEMU_AARCH64 = shutil.which("qemu-aarch64")
AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"


@pytest.mark.parametrize("build", list(BUILDS))
def test_vector_ops_against_scalar(build, tmp_path):
    compiler = shutil.which("g++")
    assert compiler is not None, "g++ is needed to build the SIMD unit test"
    flags, needs = BUILDS[build]
    missing = [f for f in needs if f not in cpu_flags()]
    if missing:
        pytest.skip(f"this CPU lacks {missing}")
    isa = "portable" if build.startswith("portable") else build
    build_and_run([compiler, *SIMD_TEST_FLAGS, *flags], "test_simd.cpp", tmp_path / f"test_simd_{build}", f"{isa} ok")


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


def test_portable_kernels_against_loops(tmp_path):
    compiler = shutil.which("g++")
    assert compiler is not None, "g++ is needed to build the kernel test"
    build_and_run([compiler, *KERNEL_TEST_FLAGS], "test_cpu_kernels.cpp", tmp_path / "test_cpu_kernels",
                  "portable kernels ok")


@pytest.mark.parametrize("program, flags, expect", [
    ("test_simd.cpp", SIMD_TEST_FLAGS, "portable ok"),
    ("test_cpu_kernels.cpp", KERNEL_TEST_FLAGS, "portable kernels ok"),
])
def test_aarch64_neon_build_under_qemu(program, flags, expect, tmp_path):
    # No machine here is an Arm one: the NEON build is cross-compiled and run by qemu.
    # CI installs the tools and sets ADAPTIVE_CONV_REQUIRE_AARCH64=1, so there it never skips.
    if not (AARCH64_GXX and QEMU_AARCH64 and os.path.isdir(AARCH64_SYSROOT)):
        why = "needs aarch64-linux-gnu-g++ and qemu-aarch64 (Debian: g++-aarch64-linux-gnu qemu-user)"
        if os.environ.get("ADAPTIVE_CONV_REQUIRE_AARCH64") == "1":
            pytest.fail(why)
        pytest.skip(why)
    build_and_run([AARCH64_GXX, *flags], program, tmp_path / program.replace(".cpp", "_aarch64"), expect,
                  runner=[QEMU_AARCH64, "-L", AARCH64_SYSROOT])
