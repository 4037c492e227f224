"""The torch.autograd.Function that wires any fused backend's forward and
backward operators together (the reference is differentiated by autograd)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from . import _backends


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
        ctx.has_kernel_bias = kernel_bias is not None

    @staticmethod
    @once_differentiable  # the backward operators are not themselves differentiable
    def backward(ctx, grad_output):
        input, weight, kernel_bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        mask = [bool(need[0]), bool(need[1] or need[2])]
        grad_input = grad_weight = grad_kernel_bias = grad_bias = None
        if mask[0] or mask[1]:
            _backends.check_deterministic(ctx.backend, input.device.type)
            ops = _backends.fused_ops(ctx.backend)
            gi, gw, gkb = ops.backward(grad_output.contiguous(), input, weight, kernel_bias, *ctx.conv, mask)
            grad_input = gi if need[0] else None
            grad_weight = gw if need[1] else None
            grad_kernel_bias = gkb if need[2] and ctx.has_kernel_bias else None
        if need[3]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_kernel_bias, grad_bias, None, None, None, None, None
