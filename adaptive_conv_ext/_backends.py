"""Backend dispatch: which implementation serves a call, and why another cannot.

"native" is the compiled operator for the tensor's device (csrc/), "triton" the
Triton kernels (adaptive_conv_ext/triton/), "reference" the unfold code.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Callable, NamedTuple, Optional

import torch

from . import _native


class BackendUnavailableError(RuntimeError, ValueError):
    """The requested backend cannot run for this tensor or this build."""


class FusedOps(NamedTuple):
    forward: Callable
    backward: Callable


def _native_backward(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask):
    # The compiled op cannot read torch's deterministic flag (not in the stable ABI):
    # every caller hands it over here.
    return torch.ops.adaptive_conv_ext.adaptive_conv2d_backward.default(
        grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask,
        torch.are_deterministic_algorithms_enabled(),
    )


def _native_forward_callable() -> Optional[Callable]:
    """The native forward operator as the C++ callable behind its OpOverload (whose
    __call__ is one more Python frame in front of it), None without the build."""
    if _native.IMPORT_ERROR is not None:
        return None
    overload = torch.ops.adaptive_conv_ext.adaptive_conv2d_forward.default
    return getattr(overload, "_op", overload)


# For adaptive_conv2d's calls without autograd (functional._run); Function.forward goes
# through fused_ops, looked up at each call.
NATIVE_FORWARD = _native_forward_callable()


def _native_ops() -> FusedOps:
    return FusedOps(torch.ops.adaptive_conv_ext.adaptive_conv2d_forward.default, _native_backward)


def _triton_ops() -> FusedOps:
    from .triton import ops as triton_ops

    return FusedOps(triton_ops.forward, triton_ops.backward)


_FUSED = {"native": _native_ops, "triton": _triton_ops}


def fused_ops(name: str) -> FusedOps:
    return _FUSED[name]()


def native_unavailable_reason(device: torch.device) -> Optional[str]:
    """Why this build cannot run native kernels on `device`'s type (None: it can).
    Meta tensors (and fake tensors) go through the operators' fake kernels."""
    if _native.IMPORT_ERROR is not None:
        return (
            "the compiled extension adaptive_conv_ext._C is not importable "
            f"({_native.IMPORT_ERROR}); build it with `pip install .` from the repository root"
        )
    if device.type == "meta":
        return None
    if device.type not in ("cpu", "cuda"):
        return f"there are no native kernels for device type '{device.type}'"
    if not _native.has_kernel(device.type):
        if device.type == "cuda" and _native.CUDA_UNAVAILABLE is not None:
            return _native.CUDA_UNAVAILABLE
        return f"this build has no native {device.type.upper()} kernels"
    return None


def device_unavailable_reason(device: torch.device) -> Optional[str]:
    """Why no tensor can live on `device` in this process (None: it can)."""
    if device.type != "cuda":
        return None
    if torch.version.cuda is None and torch.version.hip is None:
        return f"torch built without CUDA (torch {torch.__version__})"
    if not torch.cuda.is_available():
        return "no CUDA device (torch has CUDA, but no GPU or driver is visible to this process)"
    if device.index is not None and device.index >= torch.cuda.device_count():
        return f"no CUDA device {device.index} (this process sees {torch.cuda.device_count()})"
    return None


def triton_interpreting() -> bool:
    # The kernels fix interpreter mode when they are imported; before that, the
    # environment decides what importing them will do.
    kernels = sys.modules.get("adaptive_conv_ext.triton.kernels")
    if kernels is not None:
        return kernels.INTERPRET
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# What the Triton kernels compute in (float64 goes to native or the reference).
TRITON_DTYPES = frozenset((torch.float32, torch.float16, torch.bfloat16))


def triton_unavailable_reason(device: torch.device) -> Optional[str]:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton missing: Triton is not installed; `pip install triton` (3.6 or newer)"
    if device.type in ("cuda", "meta") or (device.type == "cpu" and triton_interpreting()):
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


def resolve(backend: str, device: torch.device, dtype: Optional[torch.dtype] = None) -> str:
    """Map a requested backend name to the one that will run, or raise."""
    global _warned_fallback
    if backend == "reference":
        return backend
    if backend in _UNAVAILABLE:
        reason = _UNAVAILABLE[backend](device)
        if reason is not None:
            raise BackendUnavailableError(f"backend='{backend}' is not available for {device} tensors: {reason}")
        return backend
    # auto: native, else Triton on a GPU, else the reference (meta tensors: the
    # native fake kernels if built, else the reference, which runs on meta too).
    if native_unavailable_reason(device) is None:
        return "native"
    if device.type == "meta":
        return "reference"
    if (
        device.type == "cuda"
        and (dtype is None or dtype in TRITON_DTYPES)
        and triton_unavailable_reason(device) is None
    ):
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
    """{backend: None if usable on `device`, else the reason it is not}.

    Usable means the device exists in this process and the backend can run there:
    on a machine without a GPU every backend reports "no CUDA device" for "cuda"."""
    device = torch.device(device)
    missing = device_unavailable_reason(device)
    native = missing or native_unavailable_reason(device)
    if missing and device.type == "cuda" and _native.CUDA_LOAD_FAILED:
        # a broken install, reported even without a GPU
        native = f"{missing}; also {_native.CUDA_UNAVAILABLE}"
    return {
        "native": native,
        "triton": missing or triton_unavailable_reason(device),
        "reference": missing,
    }
