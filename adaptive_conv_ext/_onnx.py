"""ONNX export: the fused operator written in standard operators, registered on import.

``torch.onnx.export(model, args, dynamo=True)`` first captures the model with
torch.export (the graph then holds ``adaptive_conv_ext::adaptive_conv2d_forward``),
then decomposes every op that has no ONNX translation with the table that
``torch.onnx._internal.exporter._decomp.create_onnx_friendly_decomposition_table``
builds, and translates the result op by op. On import, this module wraps that builder
so the table it returns also maps our op to :func:`adaptive_conv2d_standard_ops`: no
argument from the user, and no other consumer sees it (eager calls, torch.export,
torch.compile and AOTInductor keep the fused op). It is not registered in
``torch._decomp.decomposition_table``: Inductor asserts, whenever the ``CI``
environment variable is set, that no op it calls as a fallback has a decomposition
there, so torch.compile and AOTInductor would fail in every CI job.

The formulation (SPEC section 1), unfold-free, every step an ONNX Conv, Tanh, Mul,
ReduceSum, Add or Reshape:

- taps  X[n, c', (u,v), i, j] : a depthwise Conv of x with one-hot kH x kW kernels
  (stride, padding and dilation of the layer), C*kH*kW output channels;
- sigma[n, c', (u,v), o, i, j]: a Conv of x with groups=C whose weights are Q
  regrouped by input channel (each generating filter is an ordinary conv filter),
  bias beta;
- y = bias + ReduceSum over (c, (u,v)) of tanh(sigma) * X.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from . import _native


def one_hot_taps(input: torch.Tensor, kH: int, kW: int, stride, padding, dilation) -> torch.Tensor:
    """X as (N, C*kH*kW, Ho, Wo): channel c'*kH*kW + (u*kW + v) is tap (u, v) of channel c',
    computed by a depthwise conv with one-hot kernels (ONNX: one Conv)."""
    T, C = kH * kW, input.shape[1]
    one_hot = torch.eye(T, dtype=input.dtype, device=input.device).reshape(T, 1, kH, kW)
    return F.conv2d(input, one_hot.repeat(C, 1, 1, 1), None, stride, padding, dilation, groups=C)


def generator_filters(weight: torch.Tensor, kernel_bias: Optional[torch.Tensor], groups: int):
    """Q and beta regrouped as the weights (C*T*Og, 1, kH, kW) and bias of a groups=C conv
    whose output channel (c', (u,v), o_local) is sigma of kernel element (u,v) for the
    pair (o, c): each generating filter is an ordinary conv filter on its channel c'."""
    O, Cg, kH, kW = weight.shape[:4]
    T, Og = kH * kW, O // groups
    q = weight.reshape(groups, Og, Cg, T, kH, kW).permute(0, 2, 3, 1, 4, 5).reshape(-1, 1, kH, kW)
    beta = None
    if kernel_bias is not None:
        beta = kernel_bias.reshape(groups, Og, Cg, T).permute(0, 2, 3, 1).reshape(-1)
    return q, beta


def adaptive_conv2d_standard_ops(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor],
    bias: Optional[torch.Tensor],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> torch.Tensor:
    """The forward operator (4-D input, validated pairs) in conv2d, tanh, mul and sum."""
    stride, padding, dilation = tuple(stride), tuple(padding), tuple(dilation)
    N, C = input.shape[:2]
    O, Cg, kH, kW = weight.shape[:4]
    T, Og = kH * kW, O // groups
    taps = one_hot_taps(input, kH, kW, stride, padding, dilation)
    Ho, Wo = taps.shape[2:]
    q, beta = generator_filters(weight, kernel_bias, groups)
    sigma = F.conv2d(input, q, beta, stride, padding, dilation, groups=C)
    # (c, (u,v)) sit next to each other in both, so the sum over them is one ReduceSum
    # over one axis (onnxruntime runs that faster than a sum over two separate axes:
    # benchmarks/onnx_runtime.py).
    K = torch.tanh(sigma).reshape(N, groups, Cg * T, Og, Ho * Wo)
    X = taps.reshape(N, groups, Cg * T, 1, Ho * Wo)
    y = (K * X).sum(dim=2).reshape(N, O, Ho, Wo)
    if bias is not None:
        y = y + bias.reshape(1, O, 1, 1)
    return y


# Why the standard-op form could not be registered (None: it is registered).
REGISTRATION_ERROR: Optional[str] = None


try:  # private: the flag that torch.onnx.export (dynamo=True) sets while it runs
    from torch.onnx._internal.exporter import _flags as _onnx_export_flags
except ImportError:
    _onnx_export_flags = None


def in_onnx_export() -> bool:
    """Whether torch.onnx.export is running, also while it captures the model with a strict
    (dynamo) torch.export: it falls back to that when the first capture raises, and dynamo
    folds torch.onnx.is_in_onnx_export() to False, but reads a module flag as a guarded
    constant (so torch.compile sees False, without a graph break)."""
    return bool(getattr(_onnx_export_flags, "_is_onnx_exporting", False)) or torch.onnx.is_in_onnx_export()


def check_exportable(backend: str) -> None:
    """Called with the resolved backend before the op runs: inside torch.onnx.export,
    raise if the graph would hold an op without an ONNX form."""
    if not in_onnx_export():
        return
    if backend == "triton":
        raise RuntimeError(
            "adaptive_conv2d: backend='triton' cannot be exported to ONNX (its kernels have no ONNX "
            "form); export with backend='auto' or 'native' instead (e.g. set `layer.backend = \"auto\"` "
            "on every AdaptiveConv2d, and move the model to the CPU if this build has no native CUDA "
            "kernels): the ONNX graph is the same standard-operator form whichever backend trained the model"
        )
    if backend == "native" and REGISTRATION_ERROR is not None:
        raise RuntimeError(
            f"adaptive_conv2d: cannot export to ONNX with torch {torch.__version__}: {REGISTRATION_ERROR}; "
            "use torch 2.13 (the version this package is tested with), or export with backend='reference' "
            "(an unfold formulation, slower in onnxruntime)"
        )


def _register_decomposition() -> None:
    global REGISTRATION_ERROR
    try:  # private API: if a torch version moves it, only ONNX export is lost (see check_exportable)
        from torch.onnx._internal.exporter import _decomp as onnx_decomp

        build = onnx_decomp.create_onnx_friendly_decomposition_table
    except (ImportError, AttributeError) as exc:
        REGISTRATION_ERROR = f"torch.onnx's exporter has no create_onnx_friendly_decomposition_table ({exc})"
        return
    if getattr(build, "adds_adaptive_conv2d", False):  # the module was imported again
        return
    op = torch.ops.adaptive_conv_ext.adaptive_conv2d_forward.default

    @functools.wraps(build)
    def build_with_adaptive_conv2d(*args, **kwargs):
        table = build(*args, **kwargs)
        table.setdefault(op, adaptive_conv2d_standard_ops)
        return table

    build_with_adaptive_conv2d.adds_adaptive_conv2d = True
    onnx_decomp.create_onnx_friendly_decomposition_table = build_with_adaptive_conv2d


def onnx_decomposition_table() -> dict:
    """The table the ONNX exporter decomposes with (for tests and for the curious)."""
    from torch.onnx._internal.exporter import _decomp as onnx_decomp

    return onnx_decomp.create_onnx_friendly_decomposition_table(set())


if _native.IMPORT_ERROR is None:
    _register_decomposition()
