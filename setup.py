"""Builds adaptive_conv_ext._C: the CPU kernels always, the CUDA kernels when the
installed torch has CUDA and nvcc is found. Install with `pip install .`
(on a machine without network: `pip install --no-build-isolation .`)."""

import glob
import os
import platform

import torch
from setuptools import find_packages, setup
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
            py_limited_api=True,
        )
    ]


class BuildWithIsaFlags(BuildExtension):
    """BuildExtension that adds ISA_FLAGS to the one file each belongs to.

    setuptools compiles every source with the same flags, so the per-file flags
    go in through the compiler's single-file hook (hence no ninja)."""

    def build_extensions(self):
        compile_one = self.compiler._compile

        def compile_with_isa(obj, src, ext, cc_args, extra_postargs, pp_opts):
            flags = next((f for suffix, f in ISA_FLAGS.items() if src.endswith(suffix)), [])
            return compile_one(obj, src, ext, cc_args, list(extra_postargs) + flags, pp_opts)

        self.compiler._compile = compile_with_isa
        super().build_extensions()


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
