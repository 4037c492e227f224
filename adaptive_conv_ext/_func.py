"""torch.func support for the fused operator: batching rules (vmap) and derivatives
computed through the reference (forward mode, and the backward's own derivatives).

One set of rules serves both the autograd.Functions in _autograd.py (every fused
backend) and the native operators' own registrations (``torch.ops.adaptive_conv_ext.*``
called directly). Each rule is given ``run``, the operator to call on the folded
tensors, so that the folded call goes through autograd and any outer transform.

vmap never loops over the vmapped dimension B; it folds it into one fused call:

- shared parameters, input/grad_output vmapped: B joins the batch, (B, N, ...) -> (B*N, ...);
- per-element parameters, or per-element parameter gradients (``vmap(grad(...))``, the
  per-sample gradients of opacus-style code): B joins the groups. Element b's input
  channels become the b-th block of ``groups`` groups, (B, N, C, H, W) -> (N, B*C, H, W),
  its parameters (B, O, ...) -> (B*O, ...), and the op runs with ``groups * B`` groups.
  Each element's gradients then come from its own groups: nothing is summed across B.
  Unbatched tensors are expanded to B for this (the input is copied B times).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .reference import adaptive_conv2d_reference

# Forward mode runs the reference a chunk of output channels at a time, so that each
# of its per-chunk tensors (sigma, tanh(sigma) and their tangents) holds at most this
# many elements (2**24: 128 MiB each in float64) where one output channel allows it.
JVP_CHUNK_ELEMENTS = 1 << 24


def _leading(t: torch.Tensor, dim: Optional[int], size: int) -> torch.Tensor:
    """t with its vmapped dimension first; an unbatched t expanded to `size` (a view)."""
    return t.movedim(dim, 0) if dim is not None else t.expand(size, *t.shape)


def _into_batch(t: torch.Tensor, dim: Optional[int], size: int) -> torch.Tensor:
    """(B, N, ...) -> (B*N, ...)."""
    return _leading(t, dim, size).flatten(0, 1)


def _into_channels(t: torch.Tensor, dim: Optional[int], size: int) -> torch.Tensor:
    """(B, N, C, H, W) -> (N, B*C, H, W): element b's channels are the b-th block."""
    return _leading(t, dim, size).transpose(0, 1).flatten(1, 2)


def _into_out_channels(t: Optional[torch.Tensor], dim: Optional[int], size: int) -> Optional[torch.Tensor]:
    """A parameter (B, O, ...) -> (B*O, ...), matching _into_channels' group blocks."""
    return None if t is None else _leading(t, dim, size).flatten(0, 1)


def forward_vmap(run: Callable, info, dims: Sequence[Optional[int]], tensors: Sequence, groups: int):
    """The batching rule of the forward operator.

    tensors: (input, weight, kernel_bias, bias) and dims their vmapped dimensions;
    run(input, weight, kernel_bias, bias, groups) calls the operator. Returns
    (output, out_dim) as vmap rules do."""
    size = info.batch_size
    input, *params = tensors
    input_dim, *param_dims = dims
    if all(d is None for d in param_dims):
        y = run(_into_batch(input, input_dim, size), *params, groups)
        return y.unflatten(0, (size, -1)), 0
    folded = (_into_out_channels(t, d, size) for t, d in zip(params, param_dims))
    y = run(_into_channels(input, input_dim, size), *folded, groups * size)
    return y.unflatten(1, (size, -1)), 1


def backward_vmap(
    run: Callable,
    info,
    dims: Sequence[Optional[int]],
    tensors: Sequence,
    groups: int,
    need_input: bool,
    need_params: bool,
):
    """The batching rule of the backward operator.

    tensors: (grad_output, input, weight, kernel_bias) and dims their vmapped dimensions;
    run(grad_output, input, weight, kernel_bias, groups) returns (grad_input,
    grad_weight, grad_kernel_bias), a gradient not asked for (need_*) as None or an
    empty tensor; those come back unbatched."""
    size = info.batch_size
    grad_output, input, weight, kernel_bias = tensors
    go_dim, input_dim, weight_dim, kb_dim = dims
    if weight_dim is None and kb_dim is None and not need_params:
        # Only the input gradient, of shared parameters: B is more batch.
        grads = run(
            _into_batch(grad_output, go_dim, size), _into_batch(input, input_dim, size), weight, kernel_bias, groups
        )
        return _unfold_grads(grads, size, (0, None, None), (need_input, False, False))
    # Per-element parameters or parameter gradients: B becomes groups (each element's
    # weight gradient is its own groups' sum, never a sum over B).
    grads = run(
        _into_channels(grad_output, go_dim, size),
        _into_channels(input, input_dim, size),
        _into_out_channels(weight, weight_dim, size),
        _into_out_channels(kernel_bias, kb_dim, size),
        groups * size,
    )
    return _unfold_grads(grads, size, (1, 0, 0), (need_input, need_params, need_params))


def _unfold_grads(grads, size: int, folded_dims: Tuple, wanted: Tuple):
    outputs, out_dims = [], []
    for g, dim, want in zip(grads, folded_dims, wanted):
        if want and g is not None:
            outputs.append(g.unflatten(dim, (size, -1)))
            out_dims.append(dim)
        else:
            outputs.append(g)
            out_dims.append(None)
    return tuple(outputs), tuple(out_dims)


def _jvp_chunk(batch: int, per_image_channel: int) -> int:
    """Output channels per group per chunk (see JVP_CHUNK_ELEMENTS)."""
    return max(1, JVP_CHUNK_ELEMENTS // max(1, batch * per_image_channel))


def forward_jvp(conv, primals: Sequence, tangents: Sequence, output_shape) -> torch.Tensor:
    """Tangent of y = adaptive_conv2d(input, weight, kernel_bias, bias) for tangents of
    (input, weight, kernel_bias, bias) (None: zero): SPEC section 1 differentiated,

        d sigma = d beta + dQ X + Q dX,   dy = sum_(c,u,v) (1 - K^2) d sigma X + K dX + d bias,

    in plain tensor operations (no nested AD, so it also runs inside
    torch.autograd.forward_ad), a chunk of output channels at a time.

    conv: (stride, padding, dilation, groups); the input is already padded as the
    operator receives it."""
    input, weight, kernel_bias = primals
    input_t, weight_t, kernel_bias_t, bias_t = tangents
    stride, padding, dilation, groups = conv
    N = input.shape[0]
    O, Cg, kH, kW = weight.shape[:4]
    T, Og, L = kH * kW, O // groups, output_shape[2] * output_shape[3]

    def patches(t):  # X[n, g, c, (a,b), l]: the patch of every output pixel
        return F.unfold(t, (kH, kW), dilation=dilation, padding=padding, stride=stride).reshape(N, groups, Cg, T, L)

    def per_group(t, shape):
        return None if t is None else t.reshape(shape)

    X, X_t = patches(input), None if input_t is None else patches(input_t)
    Q, Q_t = (per_group(t, (groups, Og, Cg, T, T)) for t in (weight, weight_t))
    beta, beta_t = (per_group(t, (groups, Og, Cg, T, 1)) for t in (kernel_bias, kernel_bias_t))
    chunk = _jvp_chunk(N, groups * Cg * T * L)
    pieces = []
    for o in (slice(o0, o0 + chunk) for o0 in range(0, Og, chunk)):
        sigma = torch.einsum("gocuA,ngcAl->ngocul", Q[:, o], X)
        if beta is not None:
            sigma = sigma + beta[:, o]
        K = torch.tanh(sigma)
        sigma_t = [beta_t[:, o]] if beta_t is not None else []
        if Q_t is not None:
            sigma_t.append(torch.einsum("gocuA,ngcAl->ngocul", Q_t[:, o], X))
        if X_t is not None:
            sigma_t.append(torch.einsum("gocuA,ngcAl->ngocul", Q[:, o], X_t))
        terms = []
        if sigma_t:
            terms.append(torch.einsum("ngocul,ngcul->ngol", (1 - K * K) * sum(sigma_t), X))
        if X_t is not None:
            terms.append(torch.einsum("ngocul,ngcul->ngol", K, X_t))
        pieces.append(sum(terms) if terms else sigma.new_zeros(sigma.shape[:3] + sigma.shape[-1:]))
    tangent = torch.cat(pieces, dim=2).reshape(output_shape)
    if bias_t is not None:
        tangent = tangent + bias_t.view(1, -1, 1, 1)
    return tangent


def reference_backward(conv, grad_output, input, weight, kernel_bias=None):
    """(grad_input, grad_weight[, grad_kernel_bias]) of <grad_output, y> through the
    reference: a differentiable function of all its tensors (torch.func composes with
    autograd, so this can be differentiated again, to any order)."""

    def forward(x, w, kb=None):
        return adaptive_conv2d_reference(x, w, kb, None, *conv)

    primals = (input, weight) if kernel_bias is None else (input, weight, kernel_bias)
    return torch.func.vjp(forward, *primals)[1](grad_output)


def _reference_backward_args(saved):
    """saved = (grad_output, input, weight, kernel_bias) -> reference_backward's tensors."""
    return tuple(saved) if saved[3] is not None else tuple(saved[:3])


def backward_vjp(conv, saved: Sequence, cotangents: Sequence) -> Tuple:
    """Gradients of (grad_output, input, weight, kernel_bias) of the backward pass, given
    cotangents of (grad_input, grad_weight, grad_kernel_bias) (None: zero): the
    reference's second derivatives. kernel_bias None gets None."""
    primals = _reference_backward_args(saved)
    cotangents = tuple(torch.zeros_like(p) if c is None else c for c, p in zip(cotangents, primals[1:]))
    _, vjp = torch.func.vjp(lambda *p: reference_backward(conv, *p), *primals)
    return vjp(cotangents) + (None,) * (4 - len(primals))


def backward_jvp(conv, saved: Sequence, tangents: Sequence) -> Tuple:
    """Tangents of (grad_input, grad_weight, grad_kernel_bias) of the backward pass for
    tangents of (grad_output, input, weight, kernel_bias) (None: zero), through the
    reference, by reverse mode twice: for the reference's gradient r(p), u -> J_r(p)^T u
    is linear and its vector-Jacobian product with the tangents is J_r(p) t. No
    forward-mode AD, so it also runs inside torch.autograd.forward_ad (which does not nest)."""
    primals = _reference_backward_args(saved)
    live = [i for i, (p, t) in enumerate(zip(primals, tangents)) if t is not None]

    def restricted(*values):
        args = list(primals)
        for i, v in zip(live, values):
            args[i] = v
        return reference_backward(conv, *args)

    out, vjp = torch.func.vjp(restricted, *(primals[i] for i in live))
    _, vjp_of_vjp = torch.func.vjp(vjp, tuple(torch.zeros_like(o) for o in out))
    (out_t,) = vjp_of_vjp(tuple(tangents[i] for i in live))
    return tuple(out_t) + (None,) * (3 - len(out_t))
