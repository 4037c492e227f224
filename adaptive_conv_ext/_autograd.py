"""The autograd wiring of every fused backend (the reference is differentiated by
autograd itself), and its torch.func rules (_func.py).

First order: AdaptiveConv2dFunction runs the backend's fused forward and backward
operators; the backward always runs as AdaptiveConv2dBackwardFunction: the same fused
backward operator for the values, and, for the gradients of those gradients
(``create_graph=True``: gradient penalties, R1, input-gradient regularisers), the
vector-Jacobian product of the reference's gradient (SPEC section 1, differentiated
twice by autograd). So no gradient ever silently drops a second-order path, on any
backend; double backward costs what the unfold reference costs (its memory included).

torch.func: both Functions have vmap rules that fold the vmapped dimension into one
fused call (batch or groups, see _func.py), so ``vmap(grad(...))`` per-sample
gradients run the fused kernels. Forward mode (jvp, jacfwd, forward_ad) is not fused:
the output's tangent is a formula in plain tensor operations, the backward's tangent
(hessian, forward-over-reverse) goes through the reference.

The native operators get the same rules (reverse mode, forward mode, vmap) for direct
calls of ``torch.ops.adaptive_conv_ext.*`` and for exported graphs, through their own
Autograd and torch.func kernels (see the end of this file).
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch._functorch.utils import unwrap_dead_wrappers

from . import _backends, _func, _native


def _save_forward_inputs(ctx, input, weight, kernel_bias, conv, backend):
    ctx.save_for_backward(input, weight, kernel_bias)
    ctx.save_for_forward(input, weight, kernel_bias)
    ctx.conv = conv
    ctx.backend = backend


def _forward_backward(ctx, grad_output):
    """(grad_input, grad_weight, grad_kernel_bias, grad_bias) from a context filled by
    _save_forward_inputs; only those in ctx.needs_input_grad, the others None."""
    input, weight, kernel_bias = ctx.saved_tensors
    need = ctx.needs_input_grad
    grad_input = grad_weight = grad_kernel_bias = grad_bias = None
    if need[0] or need[1] or need[2]:
        # A Function even without create_graph: under torch.func transforms (vmap of
        # grad) the backward needs its batching rule.
        grad_input, grad_weight, grad_kernel_bias = AdaptiveConv2dBackwardFunction.apply(
            grad_output, input, weight, kernel_bias, *ctx.conv, ctx.backend, tuple(need[:3])
        )
    if need[3]:
        grad_bias = grad_output.sum((0, 2, 3))
    return grad_input, grad_weight, grad_kernel_bias, grad_bias


_C_APPLY = torch._C._FunctionBase.__dict__["apply"]


def _jvp_outside_compile(function):
    """Give `function` its forward-mode rule (``forward_mode_jvp``) except while
    torch.compile traces it: Dynamo (torch 2.13) refuses to trace an autograd.Function
    that defines ``jvp``. Eager calls of ``function.apply`` run a subclass with it."""
    with_jvp = type(function.__name__ + "WithJvp", (function,), {"jvp": staticmethod(function.forward_mode_jvp)})
    # torch's own apply, as a descriptor: a Python classmethod in torch 2.13, a C
    # classmethod_descriptor in 2.14; __get__ binds either to the class that must run.
    apply = torch.autograd.Function.__dict__["apply"]

    def routed_apply(cls, *args, **kwargs):
        if torch.compiler.is_compiling():
            return apply.__get__(None, function)(*args, **kwargs)
        if kwargs or torch._C._are_functorch_transforms_active():
            return apply.__get__(None, with_jvp)(*args, **kwargs)
        # What torch 2.13's Function.apply does outside torch.func transforms, less its
        # binding of the arguments to forward's signature (inspect.signature: half the
        # Python time of a batch-1 call): our callers pass every argument of forward,
        # which has no defaults, positionally. (In 2.14 _C_APPLY is apply itself.)
        return _C_APPLY.__get__(None, with_jvp)(*unwrap_dead_wrappers(args))

    function.apply = classmethod(routed_apply)
    return function


def _output_tangent(ctx, input_t, weight_t, kernel_bias_t, bias_t, *_):
    """The forward's jvp (AdaptiveConv2dFunction and the forward operator's Function):
    ctx holds conv, the saved (input, weight, kernel_bias) and the output's shape."""
    return _func.forward_jvp(ctx.conv, ctx.saved_tensors, (input_t, weight_t, kernel_bias_t, bias_t), ctx.output_shape)


@_jvp_outside_compile
class AdaptiveConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend):
        ops = _backends.fused_ops(backend)
        return ops.forward(input, weight, kernel_bias, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend = inputs
        _save_forward_inputs(ctx, input, weight, kernel_bias, (stride, padding, dilation, groups), backend)
        ctx.output_shape = output.shape

    @staticmethod
    def backward(ctx, grad_output):
        return (*_forward_backward(ctx, grad_output), None, None, None, None, None)

    forward_mode_jvp = staticmethod(_output_tangent)

    @staticmethod
    def vmap(info, in_dims, input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend):
        def run(x, w, kb, b, g):
            return AdaptiveConv2dFunction.apply(x, w, kb, b, stride, padding, dilation, g, backend)

        return _func.forward_vmap(run, info, in_dims[:4], (input, weight, kernel_bias, bias), groups)


def _fused_backward(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, backend, need):
    """The backend's backward operator; gradients not in `need` come back as None."""
    mask = [bool(need[0]), bool(need[1] or need[2])]
    ops = _backends.fused_ops(backend)
    gi, gw, gkb = ops.backward(
        grad_output.contiguous(), input, weight, kernel_bias, stride, padding, dilation, groups, mask
    )
    return (
        gi if need[0] else None,
        gw if need[1] else None,
        gkb if need[2] and kernel_bias is not None else None,
    )


@_jvp_outside_compile
class AdaptiveConv2dBackwardFunction(torch.autograd.Function):
    """The backward pass as a differentiable function of (grad_output, input, weight,
    kernel_bias): fused values, reference second derivatives."""

    @staticmethod
    def forward(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, backend, need):
        return _fused_backward(grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, backend, need)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, backend, need = inputs
        ctx.save_for_backward(grad_output, input, weight, kernel_bias)
        ctx.save_for_forward(grad_output, input, weight, kernel_bias)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.need = need

    @staticmethod
    def backward(ctx, grad_grad_input, grad_grad_weight, grad_grad_kernel_bias):
        cotangents = (grad_grad_input, grad_grad_weight, grad_grad_kernel_bias)
        return (*_func.backward_vjp(ctx.conv, ctx.saved_tensors, cotangents), None, None, None, None, None, None)

    @staticmethod
    def forward_mode_jvp(ctx, *tangents):
        out = _func.backward_jvp(ctx.conv, ctx.saved_tensors, tangents[:4])
        return tuple(t if n else None for t, n in zip(out, ctx.need))

    @staticmethod
    def vmap(info, in_dims, grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, backend, need):
        def run(go, x, w, kb, g):
            return AdaptiveConv2dBackwardFunction.apply(go, x, w, kb, stride, padding, dilation, g, backend, need)

        tensors = (grad_output, input, weight, kernel_bias)
        return _func.backward_vmap(run, info, in_dims[:4], tensors, groups, need[0], need[1] or need[2])


# ---- the native operators called directly (torch.ops.adaptive_conv_ext.*) ----
# Each operator gets an autograd.Function (_op_function) with the rules of the Functions
# above: backward, jvp, vmap. It runs from two kernels registered on the operator:
# - Autograd: the Function where an input requires grad or carries a forward-mode
#   tangent (torch.autograd.forward_ad), else the CPU/CUDA kernel directly;
# - FuncTorchDynamicLayerFrontMode: under torch.func transforms, the Function goes to
#   torch.func as a Python autograd.Function does (custom_function_call), before the
#   transform unwraps anything; so torch.func.jvp/jacfwd, grad and vmap of a direct call
#   use the same rules.
# Not torch.library.register_autograd: the Function it generates has no jvp and its
# kernel takes the no-gradient path unless an input requires grad, so a forward-mode
# tangent was silently dropped (a zero tangent from torch.func.jvp, None from
# forward_ad). Arguments beyond the ones named here (if a schema grows) are passed
# through and get no gradient.


def _forward_op_setup_context(ctx, inputs, output):
    input, weight, kernel_bias, bias, stride, padding, dilation, groups = inputs[:8]
    _save_forward_inputs(ctx, input, weight, kernel_bias, (stride, padding, dilation, groups), "native")
    ctx.output_shape = output.shape


def _forward_op_backward(ctx, grad_output):
    return (*_forward_backward(ctx, grad_output), *(None,) * (len(ctx.needs_input_grad) - 4))


def _backward_op_setup_context(ctx, inputs, output):
    grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask = inputs[:9]
    ctx.has_kernel_bias = kernel_bias is not None
    if kernel_bias is None:
        # The operator still returns d beta (at beta = 0): differentiate that too.
        kernel_bias = weight.new_zeros(weight.shape[:4])
    ctx.save_for_backward(grad_output, input, weight, kernel_bias)
    ctx.save_for_forward(grad_output, input, weight, kernel_bias)
    ctx.conv = (stride, padding, dilation, groups)
    # Which outputs hold gradients; the others are empty tensors.
    ctx.computed = (output_mask[0], output_mask[1], output_mask[1])


def _backward_op_backward(ctx, *cotangents):
    cotangents = tuple(c if computed else None for c, computed in zip(cotangents, ctx.computed))
    grads = _func.backward_vjp(ctx.conv, ctx.saved_tensors, cotangents)
    if not ctx.has_kernel_bias:
        grads = grads[:3] + (None,)
    return (*grads, *(None,) * (len(ctx.needs_input_grad) - 4))


def _backward_op_jvp(ctx, grad_output_t, input_t, weight_t, kernel_bias_t, *_):
    tangents = _func.backward_jvp(ctx.conv, ctx.saved_tensors, (grad_output_t, input_t, weight_t, kernel_bias_t))
    # An output not computed is an empty tensor: its tangent is empty too (None here
    # trips an internal assert of torch.func.jvp in torch 2.13).
    weight = ctx.saved_tensors[2]
    return tuple(t if computed else weight.new_zeros(0) for t, computed in zip(tangents, ctx.computed))


def _forward_op_vmap(info, in_dims, input, weight, kernel_bias, bias, stride, padding, dilation, groups, *rest):
    def run(x, w, kb, b, g):
        return torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, kb, b, stride, padding, dilation, g, *rest)

    return _func.forward_vmap(run, info, in_dims[:4], (input, weight, kernel_bias, bias), groups)


def _backward_op_vmap(
    info, in_dims, grad_output, input, weight, kernel_bias, stride, padding, dilation, groups, output_mask, *rest
):
    def run(go, x, w, kb, g):
        return torch.ops.adaptive_conv_ext.adaptive_conv2d_backward(
            go, x, w, kb, stride, padding, dilation, g, output_mask, *rest
        )

    tensors = (grad_output, input, weight, kernel_bias)
    return _func.backward_vmap(run, info, in_dims[:4], tensors, groups, output_mask[0], output_mask[1])


def _op_function(op, setup_context, backward, jvp, vmap):
    """The autograd.Function of a native operator; its forward calls the operator, which
    inside a Function's forward (grad and forward grad off, no transform) takes the
    Autograd kernel's no-gradient path."""
    members = {
        "forward": staticmethod(lambda *args: op(*args)),
        "setup_context": staticmethod(setup_context),
        "backward": staticmethod(backward),
        "jvp": staticmethod(jvp),
        "vmap": staticmethod(vmap),
    }
    return type(op._opname + "Function", (torch.autograd.Function,), members)


def needs_autograd(args) -> bool:
    """Whether a tensor among args requires grad (grad mode on) or has a forward-mode
    tangent. Tangents exist only inside a dual level (fwAD.unpack_dual finds none
    outside one), so without one no tensor is unpacked."""
    if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return True
    return fwAD._current_level >= 0 and any(
        isinstance(a, torch.Tensor) and fwAD.unpack_dual(a).tangent is not None for a in args
    )


def _autograd_kernel(op, function):
    def kernel(keyset, *args):
        if needs_autograd(args):
            return function.apply(*args)
        # What register_autograd's kernel does without gradients: the device kernel.
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)

    return kernel


def _functorch_kernel(function):
    # Imported here: torch.func's internals are not needed to import the package.
    from torch._functorch.autograd_function import custom_function_call
    from torch._functorch.pyfunctorch import dispatch_functorch

    def kernel(keyset, *args):
        return dispatch_functorch(custom_function_call, (function, *args), {})

    return kernel


if _native.IMPORT_ERROR is None:
    _LIBRARY = torch.library.Library("adaptive_conv_ext", "FRAGMENT")
    for _qualname, *_rules in (
        (_native.FORWARD, _forward_op_setup_context, _forward_op_backward, _output_tangent, _forward_op_vmap),
        (_native.BACKWARD, _backward_op_setup_context, _backward_op_backward, _backward_op_jvp, _backward_op_vmap),
    ):
        _op = torch._library.utils.lookup_op(_qualname)
        _function = _op_function(_op, *_rules)
        _LIBRARY.impl(_op._opname, _autograd_kernel(_op, _function), "Autograd", with_keyset=True)
        _LIBRARY.impl(_op._opname, _functorch_kernel(_function), "FuncTorchDynamicLayerFrontMode", with_keyset=True)
