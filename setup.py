"""Builds adaptive_conv_ext._C: the CPU kernels always, the CUDA kernels when the
installed torch has CUDA and nvcc is found. Install with `pip install .`
(on a machine without network: `pip install --no-build-isolation .`)."""

import concurrent.futures
import copy
import glob
import os
import platform
import sys

import torch
from setuptools import find_packages, setup
from setuptools.errors import CompileError
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
X86 = platform.machine().lower() in ("x86_64", "amd64")

# Per-instruction-set copies of the CPU kernels (chosen at run time); each file
# gets the flags for its instruction set, and only that file.
ISA_FLAGS = {
    "_avx2.cpp": ["-mavx2", "-mfma"],
    "_avx512.cpp": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"],
}


def rel(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def cuda_build_reason():
    """None if the CUDA sources should be built, else why not."""
    if os.environ.get("ADAPTIVE_CONV_EXT_CPU_ONLY") == "1":
        return "ADAPTIVE_CONV_EXT_CPU_ONLY=1"
    if torch.version.cuda is None:
        return f"the installed torch {torch.__version__} has no CUDA"
    if CUDA_HOME is None:
        return "nvcc / CUDA_HOME not found"
    if not rel("csrc/ops/cuda/*.cu"):
        return "no CUDA sources in csrc/ops/cuda"
    return None


def extensions():
    sources = ["csrc/python_module.cpp", "csrc/ops/adaptive_conv2d.cpp"]
    sources += ["csrc/ops/cpu/adaptive_conv2d_cpu.cpp", "csrc/ops/cpu/adaptive_conv2d_cpu_default.cpp"]
    macros = []
    if X86:
        sources += [f"csrc/ops/cpu/adaptive_conv2d_cpu{suffix}" for suffix in ISA_FLAGS]
        macros.append(("ADAPTIVE_CONV_X86_KERNELS", None))
    cxx = ["-O3"]
    link = []
    if sys.platform.startswith("linux"):
        # at::parallel_for is a header template: without -fopenmp its `omp parallel` is
        # compiled out and every CPU kernel runs on one thread. The libgomp.so.1 this
        # links is the one libtorch_cpu has already loaded (same soname): one runtime.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    reason = cuda_build_reason()
    if reason is None:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        print(f"adaptive_conv_ext: building CPU and CUDA kernels (arch {os.environ['TORCH_CUDA_ARCH_LIST']})")
        sources += rel("csrc/ops/cuda/*.cu") + rel("csrc/ops/cuda/*.cpp")
        return [
            CUDAExtension(
                "adaptive_conv_ext._C",
                sources,
                include_dirs=[os.path.join(ROOT, "csrc")],
                define_macros=macros + [("ADAPTIVE_CONV_WITH_CUDA", None)],
                extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++17", "-lineinfo"]},
                extra_link_args=link,
                py_limited_api=True,
            )
        ]
    print(f"adaptive_conv_ext: building the CPU kernels only ({reason})")
    return [
        CppExtension(
            "adaptive_conv_ext._C",
            sources,
            include_dirs=[os.path.join(ROOT, "csrc")],
            define_macros=macros,
            extra_compile_args={"cxx": cxx},
            extra_link_args=link,
            py_limited_api=True,
        )
    ]


class BuildWithIsaFlags(BuildExtension):
    """BuildExtension that adds ISA_FLAGS to the one file each belongs to, and
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
            flags = next((f for suffix, f in ISA_FLAGS.items() if src.endswith(suffix)), [])
            snapshot = copy.copy(compiler)  # compiler_so as torch set it for this file
            args = (obj, src, ext, list(cc_args), list(extra_postargs) + flags, pp_opts)
            pending.append((src, lambda: compile_unbound(snapshot, *args)))

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
    python_requires=">=3.9",
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
