"""Builds the adaptive_conv_ext operator libraries on the LibTorch stable ABI (one
binary per platform and Python >= 3.10 for every torch >= 2.10, see README
"Supported versions"):

  adaptive_conv_ext/_C.abi3.so       the schemas and the CPU kernels; needs no CUDA
  adaptive_conv_ext/_C_cuda.abi3.so  the CUDA kernels (when the installed torch has
                                     CUDA and nvcc is found); loaded by _native.py only
                                     when the running torch has CUDA

Install with `pip install .` (on a machine without network: `pip install --no-build-isolation .`)."""

import concurrent.futures
import copy
import glob
import os
import platform
import shutil
import subprocess
import sys

import torch
from setuptools import find_packages, setup
from setuptools.errors import CompileError
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from object_cache import ObjectCache  # noqa: E402
X86 = platform.machine().lower() in ("x86_64", "amd64")

# The oldest torch the binaries must load into: the stable-ABI headers then hide
# every API newer than 2.10 (torch/csrc/stable/version.h).
TORCH_TARGET_VERSION = "0x020A000000000000"  # 2.10
# The Python limited API compiled against, and the wheel tag that says so.
PY_LIMITED_API = "0x030A0000"  # 3.10
WHEEL_PY_TAG = "cp310"

# Per-instruction-set copies of the CPU kernels (chosen at run time); each file
# gets the flags for its instruction set, and only that file.
ISA_FLAGS = {
    "_avx2.cpp": ["-mavx2", "-mfma"],
    "_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
}

# The portable kernels (SSE2 on x86) without Python's -fwrapv (CPython's own code relies on
# it; the kernels do not): with it GCC compiled their backward 14% slower (mid-64, one
# thread, AMD EPYC Zen 5, 2026-12-06: 279 -> 245 ms without it). The AVX2 and AVX-512
# kernels measured the same or up to 3% slower without it, so they keep their code.
# Functions 64-byte aligned: the portable backward's speed moved by 3-4% with where its
# unchanged code happened to land (a change to the forward alone made it slower); aligned, it
# took 196 ms instead of 203-205 (mid-64, one thread, AMD EPYC Zen 5, 2026-12-06).
PORTABLE_FLAGS = ["-fno-wrapv", "-falign-functions=64"]

# The kernel files that include no libtorch header (csrc/ops/cpu/parallel.h): compiled
# without torch's include paths, so their objects do not depend on the torch built
# against, and CI's wheel build takes install.sh's (ObjectCache.shared).
TORCH_FREE_SOURCES = {f"csrc/ops/cpu/adaptive_conv2d_cpu{suffix}" for suffix in ("_default.cpp", *ISA_FLAGS)}
# Include paths of torch and of the environment it is installed in (a venv's include/).
ENV_INCLUDE_PREFIXES = tuple(
    os.path.join(p, "") for p in {os.path.dirname(torch.__file__), os.path.join(sys.prefix, "include")}
)


def without_torch_includes(args):
    return [a for a in args if not (a.startswith("-I") and os.path.join(a[2:], "").startswith(ENV_INCLUDE_PREFIXES))]


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def cuda_build_reason():
    """None if the CUDA library should be built, else why not."""
    if os.environ.get("ADAPTIVE_CONV_EXT_CPU_ONLY") == "1":
        return "ADAPTIVE_CONV_EXT_CPU_ONLY=1"
    if torch.version.cuda is None:
        return f"the installed torch {torch.__version__} has no CUDA"
    if CUDA_HOME is None:
        return "nvcc / CUDA_HOME not found"
    if not rel("csrc/ops/cuda/*.cu"):
        return "no CUDA sources in csrc/ops/cuda"
    return None


def file_flags(src):
    """The flags of one source file: its instruction set's, and TORCH_TARGET_VERSION."""
    flags = next((f for suffix, f in ISA_FLAGS.items() if src.endswith(suffix)), [])
    if src.endswith("adaptive_conv2d_cpu_default.cpp"):
        flags = flags + PORTABLE_FLAGS
    flags = flags + [f"-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}"]
    if src.endswith(".cu"):  # nvcc passes host flags on with -Xcompiler
        flags = [f for f in flags if f.startswith("-D")]
    return flags


def extensions():
    common = ["csrc/ops/adaptive_conv2d.cpp"]  # argument checks: both libraries
    cpu_sources = ["csrc/python_module.cpp", "csrc/ops/schemas.cpp", *common,
                   "csrc/ops/cpu/adaptive_conv2d_cpu.cpp", "csrc/ops/cpu/adaptive_conv2d_cpu_default.cpp"]
    macros = [("Py_LIMITED_API", PY_LIMITED_API)]
    if X86:
        cpu_sources += [f"csrc/ops/cpu/adaptive_conv2d_cpu{suffix}" for suffix in ISA_FLAGS]
        macros.append(("ADAPTIVE_CONV_X86_KERNELS", None))
    # The stable C shim (aoti_torch_*, torch_*, torch_parallel_for) lives in libtorch_cpu:
    # nothing else of libtorch is linked (torch.utils.cpp_extension would add libc10,
    # libtorch, and for CUDA libc10_cuda and libtorch_cuda). The kernels' threads are
    # torch's own (torch::stable::parallel_for), so no OpenMP flags here.
    cpu = CppExtension(
        "adaptive_conv_ext._C",
        cpu_sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=macros,
        extra_compile_args={"cxx": ["-O3"]},
        py_limited_api=True,
    )
    cpu.libraries = ["torch_cpu"]
    reason = cuda_build_reason()
    if reason is not None:
        print(f"adaptive_conv_ext: building the CPU library only ({reason})")
        return [cpu]
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
    print(f"adaptive_conv_ext: building the CPU and CUDA libraries (arch {os.environ['TORCH_CUDA_ARCH_LIST']})")
    gpu = CUDAExtension(
        "adaptive_conv_ext._C_cuda",
        ["csrc/ops/cuda/python_module_cuda.cpp", *common]
        + rel("csrc/ops/cuda/*.cu") + rel("csrc/ops/cuda/adaptive_conv2d_cuda.cpp"),
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=[("Py_LIMITED_API", PY_LIMITED_API)],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-std=c++17", "-lineinfo"]},
        py_limited_api=True,
    )
    # cudart linked statically: the library needs no particular libcudart.so.N, only a
    # driver new enough for the toolkit that built it. dl: the current-stream lookup.
    gpu.libraries = ["torch_cpu", "cudart_static", "rt", "pthread", "dl"]
    # The CUDA library first: its compiles run while a build whose CPU objects are shared
    # (ObjectCache.shared) is still finishing them.
    return [gpu, cpu]


class BuildWithIsaFlags(BuildExtension):
    """BuildExtension that adds file_flags(src) to each file, and
    compiles the files concurrently (MAX_JOBS at a time, default: all cores).

    setuptools compiles every source with the same flags, so the per-file flags
    go in through the compiler's single-file hook (hence no ninja). That hook runs
    one file at a time; here it only records each compile (with a snapshot of the
    compiler, whose executable torch swaps between g++ and nvcc per file), and the
    recorded compiles then run in a thread pool."""

    def build_extensions(self):
        compiler = self.compiler
        compile_unbound = type(compiler)._compile
        pending = []  # (source, compile thunk) recorded by the hook below

        def record_compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
            flags = file_flags(src)
            snapshot = copy.copy(compiler)  # compiler_so as torch set it for this file
            torch_free = os.path.relpath(os.path.join(ROOT, src), ROOT) in TORCH_FREE_SOURCES
            if torch_free:
                cc_args, pp_opts = without_torch_includes(cc_args), without_torch_includes(pp_opts)
            args = (obj, src, ext, list(cc_args), list(extra_postargs) + flags, pp_opts)
            # the command line, with this tree's path as a placeholder (another checkout's
            # build may share a torch-free object)
            signature = repr((snapshot.compiler_so, args[3:])).replace(ROOT, "<root>")
            cached = ObjectCache.entry(ROOT, src, signature)
            shared = ObjectCache.shared(ROOT, src, signature) if torch_free else None
            kept = kept_cuda_object(src)
            if kept is not None:
                args = args[:4] + (args[4] + ["-Xptxas", "-v"],) + args[5:]
                # setuptools runs the compiler through .call (older: .spawn)
                snapshot.call = snapshot.spawn = lambda cmd, kept=kept, **_: spawn_to_log(cmd, kept + ".log")

                def compile_and_keep_cuda(args=args, kept=kept):
                    compile_unbound(snapshot, *args)
                    shutil.copy2(args[0], kept)
                pending.append((src, compile_and_keep_cuda))
            elif shared is not None and shared.restore_shared(obj):
                print(f"adaptive_conv_ext: {src}: object of another build, same inputs ({shared.path})", flush=True)
            elif cached is None or src.endswith(".cu"):
                pending.append((src, lambda: compile_unbound(snapshot, *args)))
            elif cached.restore(obj):
                print(f"adaptive_conv_ext: {src} unchanged (object from {cached.path})", flush=True)
            else:
                def compile_and_keep(args=args, cached=cached):
                    obj, src, ext, cc_args, postargs, pp_opts = args
                    compile_unbound(snapshot, obj, src, ext, cc_args, postargs + ["-MMD", "-MF", cached.deps], pp_opts)
                    cached.store(obj)
                pending.append((src, compile_and_keep))

        compile_all = compiler.compile

        def compile_concurrently(*args, **kwargs):
            pending.clear()
            objects = compile_all(*args, **kwargs)  # runs the hooks: records, compiles nothing
            pending.sort(key=lambda job: not job[0].endswith(".cu"))  # the slowest (nvcc) start first
            run_concurrently(pending)
            return objects

        compiler._compile = record_compile
        compiler.compile = compile_concurrently
        super().build_extensions()


def kept_cuda_object(src):
    """Where a .cu file's object and its ptxas -v log are kept ($ADAPTIVE_CONV_CUDA_OBJECTS/
    <path with / as _>.o and .o.log), or None: CI's wheel build keeps them, and
    .ci/compile_cuda.sh runs the SASS check and the floor report on these very objects
    instead of compiling the kernels a second time."""
    root = os.environ.get("ADAPTIVE_CONV_CUDA_OBJECTS")
    if not root or not src.endswith(".cu"):
        return None
    os.makedirs(root, exist_ok=True)
    return os.path.join(root, os.path.relpath(src, ROOT).replace(os.sep, "_") + ".o")


def spawn_to_log(cmd, log):
    """Runs a compiler command with its output in `log` (ptxas -v writes a few lines per
    kernel); prints what is not ptxas's per-kernel report (warnings), all of it on failure."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(log, "w") as f:
        f.write(proc.stdout)
    if proc.returncode != 0:
        print(proc.stdout, flush=True)
        raise CompileError(f"{cmd[0]} failed with exit code {proc.returncode}")
    other = [l for l in proc.stdout.splitlines() if not l.startswith("ptxas info") and "bytes stack frame" not in l]
    if other:
        print("\n".join(other), flush=True)


def run_concurrently(compiles):
    """Runs the recorded (source, thunk) compiles, MAX_JOBS at a time; once all have
    finished, raises one CompileError naming every file that failed."""
    jobs = max(1, min(len(compiles), int(os.environ.get("MAX_JOBS") or os.cpu_count() or 1)))
    print(f"adaptive_conv_ext: compiling {len(compiles)} file(s), {jobs} at a time (MAX_JOBS)", flush=True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [(src, pool.submit(thunk)) for src, thunk in compiles]
    failed = [(src, f.exception()) for src, f in futures if f.exception() is not None]
    if failed:
        raise CompileError(f"{len(failed)} file(s) failed to compile: "
                           + "; ".join(f"{src}: {exc}" for src, exc in failed))


setup(
    name="adaptive_conv_ext",
    version="0.1.0",
    description="Fused adaptive convolutional kernels (Zamora Esquivel et al., ICCV-W 2019) for PyTorch",
    packages=find_packages(include=["adaptive_conv_ext", "adaptive_conv_ext.*"]),
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildWithIsaFlags.with_options(use_ninja=False)},
    package_data={"adaptive_conv_ext": ["py.typed"]},
    python_requires=">=3.10",
    options={"bdist_wheel": {"py_limited_api": WHEEL_PY_TAG}},
)
