"""Loads the compiled operators and gives them fake (meta) implementations so that
torch.compile can trace through them.

Two libraries, both on the LibTorch stable ABI (one build runs on every torch >= 2.10):
``adaptive_conv_ext._C`` holds the schemas and the CPU kernels and needs no CUDA;
``adaptive_conv_ext._C_cuda`` holds the CUDA kernels and is loaded only when the
running torch has CUDA. Why the CUDA kernels are not there is kept in
``CUDA_UNAVAILABLE`` for ``available_backends('cuda')``."""

from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

import torch

from ._validation import check_like_input, out_size

try:
    from . import _C  # noqa: F401  (importing registers torch.ops.adaptive_conv_ext.*)

    IMPORT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # source checkout without a build
    IMPORT_ERROR = exc

# True when _C_cuda was built but could not be loaded into this CUDA torch: a failure
# to report even on a machine without a GPU.
CUDA_LOAD_FAILED = False


def _load_cuda_kernels() -> Optional[str]:
    """Imports _C_cuda (registering the CUDA kernels); None on success, else why not."""
    global CUDA_LOAD_FAILED
    if IMPORT_ERROR is not None:
        return "the CPU library adaptive_conv_ext._C did not load"
    if torch.version.cuda is None:
        return (f"the CUDA kernels need a CUDA build of torch; this torch {torch.__version__} "
                "has no CUDA")
    if importlib.util.find_spec(f"{__package__}._C_cuda") is None:
        return (
            "this build has no native CUDA kernels (adaptive_conv_ext._C_cuda was not built: "
            "the build saw no CUDA torch or no nvcc); rebuild with a CUDA-enabled torch and "
            "nvcc on PATH: `pip install --no-build-isolation .`"
        )
    try:
        from . import _C_cuda  # noqa: F401  (registers the CUDA kernels)
    except ImportError as exc:
        CUDA_LOAD_FAILED = True
        return f"adaptive_conv_ext._C_cuda could not be loaded into torch {torch.__version__}: {exc}"
    return None


CUDA_UNAVAILABLE: Optional[str] = _load_cuda_kernels()

FORWARD = "adaptive_conv_ext::adaptive_conv2d_forward"
BACKWARD = "adaptive_conv_ext::adaptive_conv2d_backward"


# Which device types the build registered kernels for. Fixed once _C (and _C_cuda) are
# loaded, so it is read here once: torch.compile cannot trace the dispatcher query itself.
_KERNEL_DEVICES = frozenset(
    device_type
    for device_type, key in (("cpu", "CPU"), ("cuda", "CUDA"))
    if IMPORT_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(FORWARD, key)
)


def has_kernel(device_type: str) -> bool:
    """Whether the native build registered kernels for this device type ('cpu', 'cuda')."""
    return device_type in _KERNEL_DEVICES


def backward_fake(input, weight, output_mask) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The outputs of a backward operator (native or Triton) without computing them:
    (grad_input, grad_weight, grad_kernel_bias), each masked-off one an empty tensor."""
    grad_input = input.new_empty(input.shape if output_mask[0] else (0,))
    grad_weight = weight.new_empty(weight.shape if output_mask[1] else (0,))
    grad_kernel_bias = weight.new_empty(weight.shape[:4] if output_mask[1] else (0,))
    return grad_input, grad_weight, grad_kernel_bias


if IMPORT_ERROR is None:

    @torch.library.register_fake(FORWARD)
    def _forward_fake(input, weight, kernel_bias, bias, stride, padding, dilation, groups):
        # a meta operand beside a CPU input dispatches here: an error, as the C++ kernel gives,
        # not new_empty memory
        check_like_input(input, (("weight", weight), ("kernel_bias", kernel_bias), ("bias", bias)),
                         RuntimeError, RuntimeError)
        ho, wo = out_size(input.shape[2:], weight.shape[2:4], stride, padding, dilation)
        return input.new_empty((input.shape[0], weight.shape[0], ho, wo))

    @torch.library.register_fake(BACKWARD)
    def _backward_fake(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask,
                       deterministic=False):
        check_like_input(input, (("grad_output", grad_output), ("weight", weight), ("kernel_bias", kernel_bias)),
                         RuntimeError, RuntimeError)
        return backward_fake(input, weight, output_mask)
