"""AdaptiveConv2d: the layer, shaped like nn.Conv2d."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import nn

from ._validation import IntPair, Padding, _pair, check_backend_name, check_padding_mode_name, padding_per_side
from .functional import adaptive_conv2d


class AdaptiveConv2d(nn.Module):
    """Adaptive convolution layer (Zamora Esquivel et al., ICCV-W 2019).

    Parameters: ``weight`` (O, C/groups, kH, kW, kH, kW), ``kernel_bias``
    (O, C/groups, kH, kW) and ``bias`` (O,). ``padding`` is an int, a pair, "valid" or
    "same", and ``padding_mode`` one of "zeros", "reflect", "replicate", "circular", as
    in nn.Conv2d. ``backend`` is passed to :func:`adaptive_conv2d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: Padding = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
        kernel_bias: bool = True,
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
        backend: str = "auto",
        padding_mode: str = "zeros",
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups ({groups}) must divide in_channels ({in_channels}) and out_channels ({out_channels})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.dilation = _pair(dilation, "dilation", 1)
        # Checked now, as nn.Conv2d does ("same" with a stride fails at construction).
        padding_per_side(padding, self.kernel_size, self.stride, self.dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding", 0)
        check_padding_mode_name(padding_mode)
        self.padding_mode = padding_mode
        self.groups = groups
        self.backend = check_backend_name(backend)
        kH, kW = self.kernel_size
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels // groups, kH, kW, kH, kW, **factory)
        )
        self.register_parameter(
            "kernel_bias",
            nn.Parameter(torch.empty(out_channels, in_channels // groups, kH, kW, **factory)) if kernel_bias else None,
        )
        self.register_parameter("bias", nn.Parameter(torch.empty(out_channels, **factory)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialises the parameters as the paper's code does (see the comments)."""
        # Each generating filter starts as a default nn.Conv2d(1, kH*kW, (kH, kW)) would,
        # as in the paper's code: Kaiming-uniform with a=sqrt(5) over fan-in kH*kW,
        # which is uniform(+-1/sqrt(fan_in)), and its bias uniform(+-1/sqrt(fan_in)).
        kH, kW = self.kernel_size
        bound = 1.0 / math.sqrt(kH * kW)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.kernel_bias is not None:
            nn.init.uniform_(self.kernel_bias, -bound, bound)
        if self.bias is not None:
            # The output bias as nn.Conv2d would set it for this layer's fan-in.
            fan_in = (self.in_channels // self.groups) * kH * kW
            b = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -b, b)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The layer on input (N, in_channels, H, W) or unbatched (in_channels, H, W)."""
        if isinstance(input, torch.Tensor) and input.dim() in (3, 4) and input.shape[-3] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expected input with in_channels={self.in_channels} channels "
                f"(dimension -3), got {input.shape[-3]} (input shape {tuple(input.shape)})"
            )
        return adaptive_conv2d(
            input, self.weight, self.kernel_bias, self.bias, self.stride, self.padding, self.dilation, self.groups,
            self.backend, self.padding_mode,
        )

    def extra_repr(self) -> str:
        """The constructor arguments that differ from their defaults, for print(module)."""
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.kernel_bias is None:
            s += ", kernel_bias=False"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
