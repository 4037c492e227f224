"""The compiled libraries are on the LibTorch stable ABI: what that changes for callers
(the backward's deterministic argument, the CUDA library loaded only under a CUDA torch)
and what the binaries link."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import adaptive_conv_ext
from adaptive_conv_ext import _backends, _native
from conftest import make_problem

pytestmark = pytest.mark.skipif(_native.IMPORT_ERROR is not None, reason="native extension not built")


def _needed(lib: Path):
    out = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@pytest.mark.skipif(shutil.which("readelf") is None, reason="readelf (binutils) not installed")
def test_libraries_link_only_the_stable_shim_of_libtorch():
    libs = sorted(Path(adaptive_conv_ext.__file__).parent.glob("_C*.so"))
    assert libs and all(lib.name.endswith(".abi3.so") for lib in libs), libs
    for lib in libs:
        torch_libs = [n for n in _needed(lib) if n.startswith(("libtorch", "libc10"))]
        # libc10 only while the CPU kernels still use at::parallel_for (issue 24 item 2)
        assert set(torch_libs) <= {"libtorch_cpu.so", "libc10.so"}, (lib.name, torch_libs)
        assert not any("cuda" in n for n in _needed(lib) if n.startswith(("libtorch", "libc10"))), lib.name


def test_backward_schema_takes_deterministic_flag():
    schema = torch.ops.adaptive_conv_ext.adaptive_conv2d_backward.default._schema
    arg = schema.arguments[-1]
    assert arg.name == "deterministic" and str(arg.type) == "bool" and arg.default_value is False


def test_native_backward_hands_over_the_deterministic_flag(monkeypatch):
    seen = []
    ops = torch.ops.adaptive_conv_ext
    op = ops.adaptive_conv2d_backward.default
    recorder = SimpleNamespace(default=lambda *args: seen.append(args[-1]) or op(*args))
    Ops = SimpleNamespace(adaptive_conv2d_forward=ops.adaptive_conv2d_forward, adaptive_conv2d_backward=recorder)

    x, w, kb, _ = make_problem(1, 2, 2, 5, 5)
    gy = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    monkeypatch.setattr(torch.ops, "adaptive_conv_ext", Ops, raising=False)
    backward = _backends.fused_ops("native").backward
    plain = backward(gy, x, w, kb, [1, 1], [0, 0], [1, 1], 1, [True, True])
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True)
        strict = backward(gy, x, w, kb, [1, 1], [0, 0], [1, 1], 1, [True, True])
    finally:
        torch.use_deterministic_algorithms(previous)
    assert seen == [False, True]
    for a, b in zip(plain, strict):  # the CPU kernels are deterministic either way
        assert torch.equal(a, b)


@pytest.mark.skipif(torch.version.cuda is not None, reason="a CPU-only torch is needed")
def test_cpu_torch_says_why_native_cuda_is_unusable():
    reason = adaptive_conv_ext.available_backends("cuda")["native"]
    assert reason is not None and "CUDA" in reason
    assert _native.CUDA_UNAVAILABLE is not None and "CUDA" in _native.CUDA_UNAVAILABLE
    assert _native.has_kernel("cpu") and not _native.has_kernel("cuda")


def test_a_cuda_library_that_fails_to_load_is_reported(monkeypatch):
    import importlib.util
    import sys

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setitem(sys.modules, "adaptive_conv_ext._C_cuda", None)  # import raises ImportError
    monkeypatch.delattr(adaptive_conv_ext, "_C_cuda", raising=False)  # already loaded under a CUDA torch
    monkeypatch.setattr(_native, "CUDA_LOAD_FAILED", False)
    reason = _native._load_cuda_kernels()
    assert _native.CUDA_LOAD_FAILED
    assert "could not be loaded" in reason and "_C_cuda" in reason
    monkeypatch.setattr(_native, "CUDA_UNAVAILABLE", reason)
    if not torch.cuda.is_available():
        native = adaptive_conv_ext.available_backends("cuda")["native"]
        assert "could not be loaded" in native


def test_stable_kernel_errors_name_the_argument():
    x, w, kb, b = make_problem(1, 4, 6, 8, 8, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, kb, b[:3], [1, 1], [1, 1], [1, 1], 1)
    with pytest.raises(RuntimeError, match="unsupported dtype"):
        xi = x.to(torch.int32)
        torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(xi, w.to(torch.int32), None, None, [1, 1], [1, 1],
                                                            [1, 1], 1)
