"""The autograd wiring of every fused backend (the reference is differentiated by
autograd itself).

First order: AdaptiveConv2dFunction runs the backend's fused forward and backward
operators. When the gradient graph is kept (``create_graph=True``: gradient
penalties, R1, input-gradient regularisers), the backward runs as
AdaptiveConv2dBackwardFunction instead: the same fused backward operator for the
values, and, for the gradients of those gradients, the vector-Jacobian product of
the reference's gradient (SPEC section 1, differentiated twice by autograd). So
no gradient ever silently drops a second-order path, on any backend; double
backward costs what the unfold reference costs (its memory included).
"""

from __future__ import annotations

import functools

import torch

from . import _backends
from .reference import adaptive_conv2d_reference


class AdaptiveConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend):
        ops = _backends.fused_ops(backend)
        return ops.forward(input, weight, kernel_bias, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, kernel_bias, bias, stride, padding, dilation, groups, backend = inputs
        ctx.save_for_backward(input, weight, kernel_bias)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.backend = backend

    @staticmethod
    def backward(ctx, grad_output):
        input, weight, kernel_bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_input = grad_weight = grad_kernel_bias = grad_bias = None
        if need[0] or need[1] or need[2]:
            _backends.check_deterministic(ctx.backend, input.device.type)
            # Grad mode is on here only when the caller asked for create_graph=True.
            run = AdaptiveConv2dBackwardFunction.apply if torch.is_grad_enabled() else _fused_backward
            grad_input, grad_weight, grad_kernel_bias = run(
                grad_output, input, weight, kernel_bias, *ctx.conv, ctx.backend, need[:3]
            )
        if need[3]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_kernel_bias, grad_bias, None, None, None, None, None


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


def _reference_backward(conv, grad_output, input, weight, kernel_bias=None):
    """(grad_input, grad_weight[, grad_kernel_bias]) of <grad_output, y> through the
    reference: a differentiable function of all its tensors (torch.func composes with
    autograd, so this can be differentiated again, to any order)."""

    def forward(x, w, kb=None):
        return adaptive_conv2d_reference(x, w, kb, None, *conv)

    primals = (input, weight) if kernel_bias is None else (input, weight, kernel_bias)
    return torch.func.vjp(forward, *primals)[1](grad_output)


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
        ctx.conv = (stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_grad_input, grad_grad_weight, grad_grad_kernel_bias):
        grad_output, input, weight, kernel_bias = ctx.saved_tensors
        primals = (grad_output, input, weight) + (() if kernel_bias is None else (kernel_bias,))
        # A gradient the first backward did not produce (None) contributes nothing.
        cotangents = tuple(
            torch.zeros_like(p) if c is None else c
            for c, p in zip((grad_grad_input, grad_grad_weight, grad_grad_kernel_bias), primals[1:])
        )
        _, vjp = torch.func.vjp(functools.partial(_reference_backward, ctx.conv), *primals)
        grads = vjp(cotangents) + (None,) * (4 - len(primals))
        return (*grads, None, None, None, None, None, None)
