"""adaptive_conv2d: validate, pick a backend, run it."""

from __future__ import annotations

from typing import Optional

import torch

from . import _backends
from ._autograd import AdaptiveConv2dFunction
from ._validation import check_backend_name, validate
from .reference import adaptive_conv2d_reference


def adaptive_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    backend: str = "auto",
) -> torch.Tensor:
    """Adaptive convolution (Zamora Esquivel et al., 2019); see SPEC section 1.

    Every output pixel (n, o, i, j) convolves its input patch X with its own kernel
    K = tanh(beta + Q X): ``y = bias + sum_c sum_(u,v) K[u,v] * X[u,v]``.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W).
        weight: Q, (O, C/groups, kH, kW, kH, kW).
        kernel_bias: beta, (O, C/groups, kH, kW) or None.
        bias: (O,) or None.
        stride, padding, dilation, groups: as in ``torch.nn.functional.conv2d``.
        backend: "auto", "native", "triton" or "reference".
    """
    check_backend_name(backend)
    args = validate(input, weight, kernel_bias, bias, stride, padding, dilation, groups)
    name = _backends.resolve(backend, input.device)
    if name == "reference":
        return adaptive_conv2d_reference(
            input, weight, kernel_bias, bias, args.stride, args.padding, args.dilation, args.groups
        )
    x = input.unsqueeze(0) if args.unbatched else input
    y = AdaptiveConv2dFunction.apply(
        x, weight, kernel_bias, bias, args.stride, args.padding, args.dilation, args.groups, name
    )
    # Keep the caller's memory format, as conv2d does.
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)
    return y.squeeze(0) if args.unbatched else y
