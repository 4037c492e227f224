"""The reference implementation: SPEC section 1 written in PyTorch on F.unfold.

It is meant to be read next to the SPEC. Autograd differentiates it, so it also
defines the gradients the fused backends must reproduce. Memory: it materialises
sigma and K, N*O*(C/g)*kH*kW*Ho*Wo elements each; ``out_channel_chunk`` bounds
that by processing the output channels of each group a chunk at a time.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ._validation import IntPair, Padding, validate


def adaptive_conv2d_reference(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
    stride: IntPair = 1,
    padding: Padding = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    out_channel_chunk: Optional[int] = None,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """SPEC section 1 on F.unfold: the adaptive convolution that defines the results and,
    through autograd, the gradients every fused backend must reproduce.

    Takes the arguments of :func:`adaptive_conv_ext.adaptive_conv2d` (without ``backend``),
    checked the same way, and runs on any device and floating dtype. It materialises sigma
    and K (N*O*(C/g)*kH*kW*Ho*Wo elements each); ``out_channel_chunk`` (output channels
    per group at a time) bounds that memory at the cost of more, smaller einsums.
    """
    args = validate(input, weight, kernel_bias, bias, stride, padding, dilation, groups, padding_mode)
    x = args.pad_input(input.unsqueeze(0) if args.unbatched else input)
    N, C, H, W = x.shape
    O, Cg, kH, kW = weight.shape[:4]
    g = args.groups
    Og, T = O // g, kH * kW
    Ho, Wo = args.out_size
    L = Ho * Wo

    # X[n, c', i, j, a, b]: the zero-padded patch of every output pixel, (N, g, C/g, T, L).
    X = F.unfold(x, (kH, kW), dilation=args.dilation, padding=args.padding, stride=args.stride)
    X = X.reshape(N, g, Cg, T, L)
    Q = weight.reshape(g, Og, Cg, T, T)  # Q[o, c, (u,v), (a,b)]
    beta = None if kernel_bias is None else kernel_bias.reshape(g, Og, Cg, T, 1)

    chunk = Og if out_channel_chunk is None else max(1, int(out_channel_chunk))
    pieces = []
    for o0 in range(0, Og, chunk):
        q = Q[:, o0 : o0 + chunk]
        # sigma[n, g, o, c, (u,v), l] = beta + sum_(a,b) Q[o, c, (u,v), (a,b)] * X[n, c', (a,b), l]
        sigma = torch.einsum("gocuA,ngcAl->ngocul", q, X)
        if beta is not None:
            sigma = sigma + beta[:, o0 : o0 + chunk]
        K = torch.tanh(sigma)
        # y[n, g, o, l] = sum_c sum_(u,v) K[n, g, o, c, (u,v), l] * X[n, c', (u,v), l]
        pieces.append(torch.einsum("ngocul,ngcul->ngol", K, X))
    y = torch.cat(pieces, dim=2) if len(pieces) > 1 else pieces[0]
    y = y.reshape(N, O, Ho, Wo)
    if bias is not None:
        y = y + bias.view(1, O, 1, 1)
    return y.squeeze(0) if args.unbatched else y
