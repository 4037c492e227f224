"""adaptive_conv2d: validate, pick a backend, run it."""

from __future__ import annotations

from typing import Optional

import torch
from torch._prims_common import suggest_memory_format

from . import _backends, _onnx
from ._autograd import AdaptiveConv2dFunction
from ._validation import IntPair, Padding, check_backend_name, validate
from .reference import adaptive_conv2d_reference


def _autocast_enabled(device_type: str) -> bool:
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def _autocast_cast(input, *others):
    """Cast to the autocast dtype, which every backend computes in (see adaptive_conv2d's
    docstring)."""
    dtype = torch.get_autocast_dtype(input.device.type)
    # Like autocast itself: only floating tensors other than float64 are cast;
    # anything else is left for validate() to judge.
    return tuple(
        t.to(dtype)
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
        else t
        for t in (input, *others)
    )


def adaptive_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    backend: str = "auto",
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Adaptive convolution (Zamora Esquivel et al., 2019); see SPEC section 1.

    Every output pixel (n, o, i, j) convolves its input patch X with its own kernel
    K = tanh(beta + Q X): ``y = bias + sum_c sum_(u,v) K[u,v] * X[u,v]``.

    Args:
        input: (N, C, H, W) or unbatched (C, H, W).
        weight: Q, (O, C/groups, kH, kW, kH, kW).
        kernel_bias: beta, (O, C/groups, kH, kW) or None.
        bias: (O,) or None.
        stride, padding, dilation, groups: as in ``torch.nn.functional.conv2d``; padding
            may also be "valid" or "same" ("same" needs stride 1; an odd total padding puts
            the extra row/column at the bottom/right, as in nn.Conv2d).
        backend: "auto", "native", "triton" or "reference".
        padding_mode: "zeros", "reflect", "replicate" or "circular", as in nn.Conv2d
            (other than "zeros", the input is padded with F.pad before the operator).

    Autocast: inside ``torch.autocast(device_type)`` (CUDA float16/bfloat16, CPU
    bfloat16, ...) the floating tensors among input, weight, kernel_bias and bias that
    are not float64 are cast to the autocast dtype and the op runs in it, as conv2d does;
    the output has that dtype. Every backend computes in float16 and bfloat16 (the
    16-bit kernels accumulate in float32). The casts are differentiable, so float32
    parameters get float32 gradients.

    Memory format: the output's is the one ``F.conv2d`` gives, the input's suggested
    format: channels_last input gives a channels_last output (with one channel too); any
    strides are accepted (fused kernels make their own contiguous copies).

    Determinism: the native CPU backward is always bitwise reproducible, for any number
    of threads (its split of the work is fixed by the shape alone); with
    ``torch.use_deterministic_algorithms(True)`` the native CUDA and Triton backwards
    switch to fixed-order reductions and are bitwise reproducible too, and the reference
    is torch's own ops, which follow that setting themselves.

    torch.compile: traceable with ``fullgraph=True`` (the native ops have fake
    implementations), with static or dynamic shapes.
    """
    check_backend_name(backend)
    if isinstance(input, torch.Tensor) and _autocast_enabled(input.device.type):
        tensors = _autocast_cast(input, weight, kernel_bias, bias)
        # The dtype is now chosen: compute in exactly it, without autocast re-casting inside.
        with torch.autocast(input.device.type, enabled=False):
            return adaptive_conv2d(*tensors, stride, padding, dilation, groups, backend, padding_mode)
    args = validate(input, weight, kernel_bias, bias, stride, padding, dilation, groups, padding_mode)
    name = _backends.resolve(backend, input.device, input.dtype)
    _onnx.check_exportable(name)
    if name == "reference":
        y = adaptive_conv2d_reference(
            input, weight, kernel_bias, bias, stride, padding, dilation, groups, padding_mode=padding_mode
        )
        return y if args.unbatched else _like_conv2d(y, input)
    x = input.unsqueeze(0) if args.unbatched else input
    y = AdaptiveConv2dFunction.apply(
        args.pad_input(x), weight, kernel_bias, bias, args.stride, args.padding, args.dilation, args.groups, name
    )
    return y.squeeze(0) if args.unbatched else _like_conv2d(y, x)


def _like_conv2d(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y in the memory format F.conv2d gives for input x: x's suggested format, read from
    its strides as torch does. (With one channel, x.is_contiguous() holds in both formats;
    the strides still tell a channels_last tensor apart.) The reference's einsum may return
    either layout, hence both directions."""
    fmt = suggest_memory_format(x)
    if suggest_memory_format(y) != fmt:
        # clone, not contiguous(): with one output channel y may count as contiguous in
        # the wanted format already while its strides are the other format's
        return y.clone(memory_format=fmt)
    return y
