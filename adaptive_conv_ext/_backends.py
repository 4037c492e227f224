"""Backend dispatch: which implementation serves a call, and why another cannot.

"native" is the compiled operator for the tensor's device (csrc/), "triton" the
Triton kernels (adaptive_conv_ext/triton/), "reference" the unfold code.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, NamedTuple, Optional

import torch

from . import _native


class BackendUnavailableError(RuntimeError, ValueError):
    """The requested backend cannot run for this tensor or this build."""


class FusedOps(NamedTuple):
    forward: Callable
    backward: Callable


def _native_ops() -> FusedOps:
    ops = torch.ops.adaptive_conv_ext
    return FusedOps(ops.adaptive_conv2d_forward.default, ops.adaptive_conv2d_backward.default)


def _triton_ops() -> FusedOps:
    from .triton import ops as triton_ops

    return FusedOps(triton_ops.forward, triton_ops.backward)


_FUSED = {"native": _native_ops, "triton": _triton_ops}


def fused_ops(name: str) -> FusedOps:
    return _FUSED[name]()


def native_unavailable_reason(device: torch.device) -> Optional[str]:
    if _native.IMPORT_ERROR is not None:
        return (
            "the compiled extension adaptive_conv_ext._C is not importable "
            f"({_native.IMPORT_ERROR}); build it with `pip install .` from the repository root"
        )
    if device.type not in ("cpu", "cuda"):
        return f"there are no native kernels for device type '{device.type}'"
    if not _native.has_kernel(device.type):
        return (
            f"this build has no native {device.type.upper()} kernels (it was built without CUDA); "
            "rebuild with a CUDA-enabled torch and nvcc on PATH: "
            "`pip install --no-build-isolation .`"
        )
    return None


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_unavailable_reason(device: torch.device) -> Optional[str]:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed; `pip install triton` (3.6 or newer)"
    if device.type == "cuda" or (device.type == "cpu" and triton_interpreting()):
        try:
            _triton_ops()
        except ImportError as exc:
            return f"the Triton kernels could not be imported ({exc})"
        return None
    if device.type == "cpu":
        return (
            "Triton kernels run on CUDA tensors; on CPU tensors only under the Triton "
            "interpreter (set TRITON_INTERPRET=1 before importing triton)"
        )
    return f"Triton has no support for device type '{device.type}' here"


_UNAVAILABLE = {"native": native_unavailable_reason, "triton": triton_unavailable_reason}
_warned_fallback = False


def resolve(backend: str, device: torch.device) -> str:
    """Map a requested backend name to the one that will run, or raise."""
    global _warned_fallback
    if backend == "reference":
        return backend
    if backend in _UNAVAILABLE:
        reason = _UNAVAILABLE[backend](device)
        if reason is not None:
            raise BackendUnavailableError(f"backend='{backend}' is not available for {device} tensors: {reason}")
        return backend
    # auto: native, else Triton on a GPU, else the reference.
    if native_unavailable_reason(device) is None:
        return "native"
    if device.type == "cuda" and triton_unavailable_reason(device) is None:
        return "triton"
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"adaptive_conv2d: no fused backend for {device} tensors "
            f"({native_unavailable_reason(device)}); using the slow reference implementation",
            RuntimeWarning,
            stacklevel=3,
        )
    return "reference"


def available_backends(device="cpu") -> dict:
    """{backend: None if usable on `device`, else the reason it is not}."""
    device = torch.device(device)
    return {
        "native": native_unavailable_reason(device),
        "triton": triton_unavailable_reason(device),
        "reference": None,
    }
