"""The paper's own procedure, written from SPEC section 1 ("The paper's own layout").

For each pair (o, c) the authors' code runs a generator ``Conv2d(1, k*k, k, padding=k//2)``
on input channel c; generator channel k*i + j multiplies the input shifted by i columns
and j rows, and the products are summed over the k*k shifts. Odd k, stride 1,
padding k//2, groups 1. Used as a fidelity test and as a benchmark baseline.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def generator_from_weight(weight_oc: torch.Tensor, kernel_bias_oc: Optional[torch.Tensor]):
    """Q[o, c] (k, k, k, k) and beta[o, c] (k, k) -> the paper's generator weight
    (k*k, 1, k, k) and bias (k*k,): generator channel k*v + u holds kernel element (u, v)."""
    k = weight_oc.shape[0]
    gen_w = weight_oc.transpose(0, 1).reshape(k * k, 1, k, k)
    gen_b = None if kernel_bias_oc is None else kernel_bias_oc.transpose(0, 1).reshape(k * k)
    return gen_w, gen_b


def weight_from_generator(gen_w: torch.Tensor, gen_b: Optional[torch.Tensor]):
    """Inverse of generator_from_weight."""
    k = gen_w.shape[-1]
    w = gen_w.reshape(k, k, k, k).transpose(0, 1)
    b = None if gen_b is None else gen_b.reshape(k, k).transpose(0, 1)
    return w, b


def adaptive_conv2d_paper(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_bias: Optional[torch.Tensor] = None,
    bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The adaptive convolution computed as the paper's code does: for every pair of output
    channel o and input channel c, a generator conv2d on channel c gives the k*k kernel
    maps, and the products with the k*k shifted inputs are summed.

    input (N, C, H, W); weight Q (O, C, k, k, k, k) with odd k; kernel_bias beta (O, C, k, k)
    or None; bias (O,) or None. Stride 1, padding k//2, groups 1 only. Equal to
    :func:`adaptive_conv_ext.adaptive_conv2d` with ``padding=k // 2``; slow (a Python loop
    over O*C pairs): a fidelity check and a benchmark baseline.
    """
    N, C, H, W = input.shape
    O, Cw, k = weight.shape[0], weight.shape[1], weight.shape[2]
    if Cw != C or k % 2 == 0 or tuple(weight.shape[2:]) != (k,) * 4:
        raise ValueError(
            "the paper's procedure needs groups=1 and an odd square kernel: weight (O, C, k, k, k, k)"
            f" with odd k, got {tuple(weight.shape)} for input channels {C}"
        )
    p = k // 2
    padded = F.pad(input, (p, p, p, p))
    outputs = []
    for o in range(O):
        acc = torch.zeros_like(input[:, 0])
        for c in range(C):
            gen_w, gen_b = generator_from_weight(
                weight[o, c], None if kernel_bias is None else kernel_bias[o, c]
            )
            kernels = torch.tanh(F.conv2d(input[:, c : c + 1], gen_w, gen_b, padding=p))
            for i in range(k):  # shift by i columns
                for j in range(k):  # shift by j rows
                    acc = acc + padded[:, c, j : j + H, i : i + W] * kernels[:, k * i + j]
        outputs.append(acc)
    y = torch.stack(outputs, dim=1)
    return y if bias is None else y + bias.view(1, O, 1, 1)
