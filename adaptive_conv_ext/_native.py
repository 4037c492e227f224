"""Loads the compiled operators (``adaptive_conv_ext._C``) and gives them fake
(meta) implementations so that torch.compile can trace through them."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

try:
    from . import _C  # noqa: F401  (importing registers torch.ops.adaptive_conv_ext.*)

    IMPORT_ERROR: Optional[BaseException] = None
except ImportError as exc:  # source checkout without a build
    IMPORT_ERROR = exc

FORWARD = "adaptive_conv_ext::adaptive_conv2d_forward"
BACKWARD = "adaptive_conv_ext::adaptive_conv2d_backward"


def out_size(size: Sequence[int], kernel: Sequence[int], stride, padding, dilation) -> List[int]:
    return [
        (size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
        for i in range(2)
    ]


# Which device types the build registered kernels for. Fixed once _C is loaded, so it
# is read here once: torch.compile cannot trace the dispatcher query itself.
_KERNEL_DEVICES = frozenset(
    device_type
    for device_type, key in (("cpu", "CPU"), ("cuda", "CUDA"))
    if IMPORT_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(FORWARD, key)
)


def has_kernel(device_type: str) -> bool:
    """Whether the native build registered kernels for this device type ('cpu', 'cuda')."""
    return device_type in _KERNEL_DEVICES


if IMPORT_ERROR is None:

    @torch.library.register_fake(FORWARD)
    def _forward_fake(input, weight, kernel_bias, bias, stride, padding, dilation, groups):
        ho, wo = out_size(input.shape[2:], weight.shape[2:4], stride, padding, dilation)
        return input.new_empty((input.shape[0], weight.shape[0], ho, wo))

    @torch.library.register_fake(BACKWARD)
    def _backward_fake(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask):
        grad_input = input.new_empty(input.shape if output_mask[0] else (0,))
        grad_weight = weight.new_empty(weight.shape if output_mask[1] else (0,))
        grad_kernel_bias = weight.new_empty(weight.shape[:4] if output_mask[1] else (0,))
        return grad_input, grad_weight, grad_kernel_bias
