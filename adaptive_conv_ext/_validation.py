"""Argument checks and normalisation for adaptive_conv2d: the one place where
bad input becomes a clear Python error, before any kernel runs."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

BACKENDS = ("auto", "native", "triton", "reference")


@dataclass(frozen=True)
class ConvArgs:
    """Validated geometry of one call (all pairs are (height, width))."""

    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    groups: int
    kernel_size: Tuple[int, int]
    out_size: Tuple[int, int]
    unbatched: bool  # the caller passed a 3-D (C, H, W) input


def _pair(value, name: str, minimum: int) -> Tuple[int, int]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        value = (int(value), int(value))
    elif isinstance(value, (tuple, list, torch.Size)):
        if len(value) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value
        ):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        value = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {type(value).__name__}")
    if value[0] < minimum or value[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(
            f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), got {t.dtype}"
        )


def validate(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    stride,
    padding,
    dilation,
    groups,
) -> ConvArgs:
    """Check every argument against SPEC section 1; raise TypeError/ValueError naming it."""
    _check_tensor(input, "input")
    _check_tensor(weight, "weight")
    if input.dim() not in (3, 4):
        raise ValueError(
            f"input must be 4-D (N, C, H, W) or 3-D unbatched (C, H, W), got shape {tuple(input.shape)}"
        )
    unbatched = input.dim() == 3
    C, H, W = input.shape[-3:]
    if weight.dim() != 6:
        raise ValueError(
            "weight must be 6-D (O, C/groups, kH, kW, kH, kW), got shape " f"{tuple(weight.shape)}"
        )
    O, Cg, kH, kW = weight.shape[:4]
    if tuple(weight.shape[4:]) != (kH, kW):
        raise ValueError(
            f"weight's last two dims must repeat its kernel size ({kH}, {kW}) "
            f"(weight is (O, C/groups, kH, kW, kH, kW)), got shape {tuple(weight.shape)}"
        )
    if kH < 1 or kW < 1:
        raise ValueError(f"weight's kernel size must be at least 1x1, got ({kH}, {kW})")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if C % groups != 0:
        raise ValueError(f"groups ({groups}) must divide the input channels ({C})")
    if O % groups != 0:
        raise ValueError(f"groups ({groups}) must divide the output channels weight.shape[0] ({O})")
    if Cg * groups != C:
        raise ValueError(
            f"weight.shape[1] * groups must equal input channels: {Cg} * {groups} != {C}"
        )
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)

    for name, t in (("kernel_bias", kernel_bias), ("bias", bias)):
        if t is not None:
            _check_tensor(t, name)
    if kernel_bias is not None and tuple(kernel_bias.shape) != (O, Cg, kH, kW):
        raise ValueError(
            f"kernel_bias must have shape (O, C/groups, kH, kW) = {(O, Cg, kH, kW)}, "
            f"got {tuple(kernel_bias.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (O,):
        raise ValueError(f"bias must have shape (O,) = ({O},), got {tuple(bias.shape)}")

    for name, t in (("weight", weight), ("kernel_bias", kernel_bias), ("bias", bias)):
        if t is None:
            continue
        if t.dtype != input.dtype:
            raise TypeError(f"{name} dtype {t.dtype} differs from input dtype {input.dtype}")
        if t.device != input.device:
            raise ValueError(f"{name} is on {t.device} but input is on {input.device}")

    extent = []
    for size, k, s, p, d, axis in zip((H, W), (kH, kW), stride, padding, dilation, ("height", "width")):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise ValueError(
                f"kernel {axis} with dilation ({span}) is larger than the padded input "
                f"{axis} ({size} + 2*{p} = {size + 2 * p})"
            )
        extent.append((size + 2 * p - span) // s + 1)
    return ConvArgs(stride, padding, dilation, groups, (kH, kW), tuple(extent), unbatched)


def check_backend_name(backend) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend
