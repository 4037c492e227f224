"""Argument checks and normalisation for adaptive_conv2d: the one place where
bad input becomes a clear Python error, before any kernel runs."""

from __future__ import annotations

import functools
import numbers
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch

# The public geometry arguments: an int, or one int per spatial dimension (height, width).
IntPair = Union[int, Tuple[int, int]]
# padding may also be "valid" or "same", as in nn.Conv2d.
Padding = Union[int, Tuple[int, int], str]

BACKENDS = ("auto", "native", "triton", "reference")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
# The operators take int64 geometry; Python ints beyond it would wrap in C++.
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ConvArgs:
    """Validated geometry of one call (all pairs are (height, width))."""

    stride: Tuple[int, int]
    padding: Tuple[int, int]  # the zero padding the operator applies, per side
    dilation: Tuple[int, int]
    groups: int
    kernel_size: Tuple[int, int]
    out_size: Tuple[int, int]
    unbatched: bool  # the caller passed a 3-D (C, H, W) input
    # Padding applied to the input before the operator (F.pad order: left, right, top,
    # bottom), with F.pad's mode: padding_mode other than "zeros", or the uneven part
    # of padding="same". None when the operator's own zero padding does it all.
    pre_pad: Optional[Tuple[int, int, int, int]] = None
    pre_pad_mode: str = "constant"

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """x (4-D) with the pre-padding applied; the operator then pads `padding` zeros."""
        if self.pre_pad is None:
            return x
        return torch.nn.functional.pad(x, self.pre_pad, mode=self.pre_pad_mode)


def out_extent(size: int, before: int, after: int, kernel: int, stride: int, dilation: int) -> int:
    """One output dimension, as F.conv2d's: the positions of a kernel dilated to
    dilation * (kernel - 1) + 1 in an input of size + before + after, every stride-th.
    The one Python copy of the formula (the native operator has its C++ twin in
    csrc/ops/adaptive_conv2d_shape.h)."""
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def out_size(size: Sequence[int], kernel: Sequence[int], stride, padding, dilation) -> List[int]:
    """(Ho, Wo) of the operators, whose padding is the same on both sides."""
    return [out_extent(size[i], padding[i], padding[i], kernel[i], stride[i], dilation[i]) for i in range(2)]


def _pair(value, name: str, minimum: int) -> Tuple[int, int]:
    """value (an int or a pair of ints, each >= minimum and within int64) as a pair;
    TypeError/ValueError naming `name` otherwise."""
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
    if value[0] > INT64_MAX or value[1] > INT64_MAX:
        raise ValueError(f"{name} must fit in int64 (<= 2**63 - 1), got {value}")
    return value


def padding_per_side(padding, kernel_size, stride, dilation) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) for an int, a pair, "valid" or "same" (as nn.Conv2d:
    "same" only with stride 1; an odd total puts the extra row/column at the end)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1 (as in nn.Conv2d), got stride={stride}")
            (top, bottom), (left, right) = (
                (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel_size, dilation)
            )
            return (top, bottom, left, right)
        raise ValueError(f"padding must be 'same', 'valid', an int or a pair of ints, got {padding!r}")
    pH, pW = _pair(padding, "padding", 0)
    return (pH, pH, pW, pW)


def check_padding_mode_name(padding_mode) -> None:
    """The one check of padding_mode's value (functional and module)."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")


def _check_padding_mode(padding_mode, sides, size) -> None:
    check_padding_mode_name(padding_mode)
    top, bottom, left, right = sides
    for axis, n, pads in (("height", size[0], (top, bottom)), ("width", size[1], (left, right))):
        if padding_mode == "reflect" and max(pads) >= n:
            raise ValueError(
                f"padding_mode='reflect' needs padding < the input {axis} ({n}), got padding {pads}"
            )
        if padding_mode == "circular" and max(pads) > n:
            raise ValueError(
                f"padding_mode='circular' needs padding <= the input {axis} ({n}), got padding {pads}"
            )


def _check_tensor(t, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(
            f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), got {t.dtype}"
        )


def check_like_input(input, operands, dtype_error=TypeError, device_error=ValueError) -> None:
    """Each (name, tensor or None) of operands has input's dtype and device. The native
    operators' fake kernels raise RuntimeError here, as their C++ kernels do."""
    for name, t in operands:
        if t is None:
            continue
        if t.dtype != input.dtype:
            raise dtype_error(f"{name} dtype {t.dtype} differs from input dtype {input.dtype}")
        if t.device != input.device:
            raise device_error(f"{name} is on {t.device} but input is on {input.device}")


def validate(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    stride: IntPair,
    padding: Padding,
    dilation: IntPair,
    groups: int,
    padding_mode: str = "zeros",
) -> ConvArgs:
    """Check every argument against SPEC section 1; raise TypeError/ValueError naming it.

    padding: an int, a pair, "valid" or "same"; padding_mode: as nn.Conv2d's."""
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
    dilation = _pair(dilation, "dilation", 1)
    sides = padding_per_side(padding, (kH, kW), stride, dilation)
    _check_padding_mode(padding_mode, sides, (H, W))

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

    check_like_input(input, (("weight", weight), ("kernel_bias", kernel_bias), ("bias", bias)))

    if H == 0 or W == 0:
        raise ValueError(
            f"input height and width must be non-zero, got ({H}, {W}); as in F.conv2d, only the "
            "batch (and channel) dimensions may be empty"
        )
    top, bottom, left, right = sides
    extent = []
    for size, before, after, k, s, d, axis in zip(
        (H, W), (top, left), (bottom, right), (kH, kW), stride, dilation, ("height", "width")
    ):
        span = d * (k - 1) + 1
        if span > INT64_MAX or size + before + after > INT64_MAX:
            raise ValueError(
                f"{axis}: the padded input ({size} + {before} + {after}) or the dilated kernel "
                f"(dilation {d} x ({k} - 1) + 1) does not fit in int64; use a smaller padding or dilation"
            )
        if size + before + after < span:
            raise ValueError(
                f"kernel {axis} with dilation ({span}) is larger than the padded input "
                f"{axis} ({size} + {before} + {after} = {size + before + after})"
            )
        extent.append(out_extent(size, before, after, k, s, d))
    N = input.shape[0] if input.dim() == 4 else 1
    if N * O * extent[0] * extent[1] > INT64_MAX:
        raise ValueError(
            f"the output ({N}, {O}, {extent[0]}, {extent[1]}) has more than 2**63 - 1 elements; "
            "check padding, stride and dilation"
        )
    _check_output_fits_memory(input, (N, O, extent[0], extent[1]), sides)

    # What the operator pads (zeros, the same on both sides) and what is padded before it.
    if padding_mode == "zeros":
        op_padding = (min(top, bottom), min(left, right))
        pre = (left - op_padding[1], right - op_padding[1], top - op_padding[0], bottom - op_padding[0])
        mode = "constant"
    else:
        op_padding, pre, mode = (0, 0), (left, right, top, bottom), padding_mode
    return ConvArgs(
        stride, op_padding, dilation, groups, (kH, kW), tuple(extent), unbatched,
        pre_pad=pre if any(pre) else None, pre_pad_mode=mode,
    )


@functools.lru_cache(maxsize=None)
def _device_memory_bytes(device: torch.device) -> Optional[int]:
    """The memory of `device` in bytes (CPU: physical RAM; CUDA: the GPU's), None if unknown."""
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
            return None
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return None


def _check_output_fits_memory(input: torch.Tensor, out_shape, sides) -> None:
    """A ValueError, before anything is allocated, when the output alone would not fit in the
    device's memory: nearly always a padding far beyond the kernel (e.g. padding=10**6)."""
    if input.device.type == "meta" or torch.compiler.is_compiling():
        return  # shapes only / traced: nothing is allocated here
    total = _device_memory_bytes(input.device)
    numel = out_shape[0] * out_shape[1] * out_shape[2] * out_shape[3]
    need = numel * input.element_size()
    if total is None or need <= total:
        return
    what = f"the output {tuple(out_shape)} would need {need / 2**30:.3g} GiB"
    where = f"more than the {total / 2**30:.3g} GiB of memory of the {input.device.type} device"
    if any(sides):
        top, bottom, left, right = sides
        raise ValueError(
            f"padding (top, bottom, left, right) = {(top, bottom, left, right)}: {what} of {input.dtype}, "
            f"{where}; padding is meant to be at most about the kernel size"
        )
    raise ValueError(f"{what} of {input.dtype}, {where}; check the input size, stride and dilation")


def check_backend_name(backend) -> str:
    """backend itself if it is one of BACKENDS, else a ValueError naming the choices."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend
