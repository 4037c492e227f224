"""adaptive_conv2d: validate, pick a backend, run it."""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

import torch
from torch._prims_common import suggest_memory_format

from . import _backends, _onnx
from ._autograd import AdaptiveConv2dFunction, needs_autograd
from ._validation import ConvArgs, IntPair, Padding, check_backend_name, validate
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
    # A call like an earlier one (_plan_key) runs that call's plan (_Plan): see below.
    key = None
    if not (
        torch.compiler.is_compiling()  # first: torch.compile traces none of the rest
        or _functorch_transforms_active()
        or _any_autocast_enabled()
        or _torch_function_mode_enabled()  # `with torch.device(...)` too
        or _tracing_state() is not None  # jit.trace (the TorchScript ONNX export)
    ):
        key = _plan_key(input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend, padding_mode)
        plan = _PLANS.get(key)
        if plan is not None and (
            plan.operand_facts is None or plan.operand_facts == _operand_facts(weight, kernel_bias, bias)
        ):
            args = plan.args
            try:
                x = input.unsqueeze(0) if args.unbatched else input
                if args.pre_pad is not None:
                    x = args.pad_input(x)
                if plan.backend == "native" and not needs_autograd((input, weight, kernel_bias, bias)):
                    # What the operator's Autograd kernel does without gradients, minus its
                    # Python call: the device kernel, with autograd's dispatch keys excluded.
                    excluded = torch._C._dispatch_tls_is_dispatch_key_excluded(_AUTOGRAD_KEY)
                    torch._C._dispatch_tls_set_dispatch_key_excluded(_AUTOGRAD_KEY, True)
                    try:
                        y = _backends.NATIVE_FORWARD(x, weight, kernel_bias, bias, *plan.geometry)
                    finally:
                        torch._C._dispatch_tls_set_dispatch_key_excluded(_AUTOGRAD_KEY, excluded)
                else:
                    y = AdaptiveConv2dFunction.apply(x, weight, kernel_bias, bias, *plan.geometry, plan.backend)
            except RuntimeError:
                # The operator refused an operand the key does not cover (weight's dtype, say):
                # the checks below then raise the error a first call gives.
                pass
            else:
                if args.unbatched:
                    return y.squeeze(0)
                return y if plan.out_format is None else y.clone(memory_format=plan.out_format)
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
    geometry = (args.stride, args.padding, args.dilation, args.groups)
    y = AdaptiveConv2dFunction.apply(args.pad_input(x), weight, kernel_bias, bias, *geometry, name)
    out_format = None if args.unbatched else _conv2d_format(y, x)
    if key is not None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        facts = None if name == "native" else _operand_facts(weight, kernel_bias, bias)
        _PLANS[key] = _Plan(name, geometry, args, out_format, facts)
    if args.unbatched:
        return y.squeeze(0)
    return y if out_format is None else y.clone(memory_format=out_format)


# ---- the repeated call: every check above done once per call signature ----
# At batch 1 the checks, the backend choice and autograd.Function.apply cost several
# times the operator itself (benchmarks/suite.py --overhead measures each part). A call
# whose facts (_plan_key) match an earlier one reuses that call's validated arguments and
# backend (its _Plan); without gradients or tangents to record it calls the native
# operator below autograd, as the Function's own forward would: the same kernel on the
# same tensors, so the same bits. The native operators check weight, kernel_bias and bias
# against the input themselves on every call (their fake kernels too), so a native plan's
# key leaves out those operands' dtypes, devices and the biases' shapes (reading them was
# half the lookup); when the operator refuses a planned call, the full checks run and raise
# what a first call raises. A Triton plan compares those facts itself (operand_facts).


class _Plan(NamedTuple):
    """What the checks of one call signature decided."""

    backend: str  # "native" or "triton" (the reference is not planned)
    geometry: Tuple  # (stride, padding, dilation, groups) as the operators take them
    args: ConvArgs
    out_format: Optional[torch.memory_format]  # the output's clone to F.conv2d's format, if any
    operand_facts: Optional[tuple]  # _operand_facts of the call, for a backend that does not check them


_PLANS: Dict[tuple, _Plan] = {}
# The autograd functionality key (AutogradCPU, AutogradCUDA, ... are it per backend): what
# torch._C._AutoDispatchBelowAutograd() excludes for dense tensors, set here by two calls
# instead of a context manager object (0.2 us less).
_AUTOGRAD_KEY = torch._C.DispatchKey.AutogradFunctionality
_MAX_PLANS = 256  # distinct call signatures kept (all dropped past it)
# The mode checks of every call, bound once (each torch._C lookup costs as much as the call).
_functorch_transforms_active = torch._C._are_functorch_transforms_active
_any_autocast_enabled = torch._C._is_any_autocast_enabled
_torch_function_mode_enabled = torch._C._is_torch_function_mode_enabled
_tracing_state = torch._C._get_tracing_state
_PLAIN_TENSORS = frozenset((torch.Tensor, torch.nn.Parameter))


def _plan_key(input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend, padding_mode):
    """The facts of a call that validate(), resolve() and the output's memory format decide
    on, as a dict key, less those the native operators check themselves (see above): the
    input's shape, strides, dtype and device, weight's shape (the kernel size "same" padding
    reads), which biases are given, and the other arguments. None for a call that is never
    planned: tensor subclasses and non-tensors, geometry other than ints, pairs of ints and
    padding strings (as keys True == 1 and 1.0 == 1, but those must still raise)."""
    plain = _PLAIN_TENSORS
    if type(input) not in plain or type(weight) not in plain or type(groups) is not int:
        return None
    if (kernel_bias is not None and type(kernel_bias) not in plain) or (bias is not None and type(bias) not in plain):
        return None
    for v in (stride, padding, dilation):
        tv = type(v)
        if tv is not int and tv is not str and (
            tv is not tuple or len(v) != 2 or type(v[0]) is not int or type(v[1]) is not int
        ):
            return None
    try:
        strides = input.stride()
    except RuntimeError:  # a layout without strides (sparse): validate() or the operator says what
        return None
    return (input.shape, strides, input.dtype, input.device, weight.shape, kernel_bias is None, bias is None,
            stride, padding, dilation, groups, backend, padding_mode)


def _operand_facts(weight, kernel_bias, bias):
    """What _plan_key leaves to the native operators' own checks."""
    return (weight.dtype, weight.device,
            None if kernel_bias is None else (kernel_bias.shape, kernel_bias.dtype, kernel_bias.device),
            None if bias is None else (bias.shape, bias.dtype, bias.device))


def _conv2d_format(y: torch.Tensor, x: torch.Tensor) -> Optional[torch.memory_format]:
    """The memory format y must be cloned to so as to have the one F.conv2d gives for input
    x (x's suggested format, read from its strides as torch does); None if y has it.
    (With one channel, x.is_contiguous() holds in both formats; the strides still tell a
    channels_last tensor apart.) The reference's einsum may return either layout, hence
    both directions."""
    fmt = suggest_memory_format(x)
    return fmt if suggest_memory_format(y) != fmt else None


def _like_conv2d(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y in F.conv2d's memory format for input x (see _conv2d_format)."""
    fmt = _conv2d_format(y, x)
    # clone, not contiguous(): with one output channel y may count as contiguous in the
    # wanted format already while its strides are the other format's
    return y if fmt is None else y.clone(memory_format=fmt)
