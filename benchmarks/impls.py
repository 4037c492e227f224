"""The implementations compared, built as closures over one set of inputs."""

from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

import adaptive_conv_ext
from adaptive_conv_ext.reference import adaptive_conv2d_reference

from .shapes import Shape

IMPLS = ("native", "triton", "reference", "compiled", "paper", "conv2d")
FUSED = ("native", "triton")
LABELS = {
    "native": "native (fused)",
    "triton": "triton (fused)",
    "reference": "reference (eager)",
    "compiled": "reference + torch.compile",
    "paper": "paper per-pair loop",
    "conv2d": "F.conv2d (yardstick)",
}
# The paper's procedure is a Python loop over O*C pairs; above this many pairs it
# is first timed on a subset of output channels and extrapolated (suite.py).
PAPER_DIRECT_PAIRS = 256

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def unavailable_reason(impl: str, shape: Shape, device: str) -> Optional[str]:
    """None if `impl` can run this case on `device`, else why not."""
    if impl in FUSED:
        reason = adaptive_conv_ext.available_backends(device)[impl]
        return None if reason is None else f"{impl} unavailable: {reason}"
    if impl == "paper":
        if shape.groups != 1:
            return f"the paper's procedure needs groups=1 (this shape has groups={shape.groups})"
        if shape.k % 2 == 0 or shape.pad != shape.k // 2:
            return "the paper's procedure needs an odd k and padding k//2"
    return None


def make_inputs(shape: Shape, n: int, dtype: torch.dtype, device: str, seed: int = 0,
                input_grad: bool = True) -> Dict[str, torch.Tensor]:
    """Leaf tensors that require grad, the same for every implementation (fixed seed);
    the input x requires grad only with `input_grad` (SPEC section 3: not for a first layer)."""
    g = torch.Generator().manual_seed(seed)
    cg, k = shape.C // shape.groups, shape.k
    ho = shape.out_size()

    def rnd(*size, scale=1.0, grad=True):
        t = torch.randn(*size, generator=g) * scale
        return t.to(device=device, dtype=dtype).requires_grad_(grad)

    # Q scaled by 1/k so that sigma = sum over k*k taps of Q*X has unit variance:
    # tanh then works in its non-saturated range, as in a trained layer.
    return {
        "x": rnd(n, shape.C, shape.H, shape.W, grad=input_grad),
        "weight": rnd(shape.O, cg, k, k, k, k, scale=1.0 / k),
        "kernel_bias": rnd(shape.O, cg, k, k, scale=0.1),
        "bias": rnd(shape.O, scale=0.1),
        "conv_weight": rnd(shape.O, cg, k, k, scale=1.0 / k),
        # the upstream gradient of every fwd+bwd run (not a leaf of the graph)
        "grad_out": torch.randn(n, shape.O, ho, ho, generator=g).to(device=device, dtype=dtype),
    }


def build(impl: str, shape: Shape, inp: Dict[str, torch.Tensor]) -> Tuple[Callable[[], torch.Tensor], List[torch.Tensor]]:
    """(fn, params): fn() runs one forward on `inp`; params are the leaves whose
    .grad a fwd+bwd run fills (cleared before every run): those that require grad."""
    pad, groups = shape.pad, shape.groups
    adaptive = [inp["x"], inp["weight"], inp["kernel_bias"], inp["bias"]]

    def grads(leaves):
        return [t for t in leaves if t.requires_grad]

    if impl in FUSED:
        def fn():
            return adaptive_conv_ext.adaptive_conv2d(*adaptive, padding=pad, groups=groups, backend=impl)
        return fn, grads(adaptive)
    if impl == "reference":
        def fn():
            return adaptive_conv2d_reference(*adaptive, padding=pad, groups=groups)
        return fn, grads(adaptive)
    if impl == "compiled":
        # A fresh Dynamo state per case: otherwise shape changes across cases mark
        # dimensions dynamic and, past the recompile limit, fall back to eager.
        torch._dynamo.reset()
        compiled = torch.compile(functools.partial(adaptive_conv2d_reference, padding=pad, groups=groups))

        def fn():
            return compiled(*adaptive)
        return fn, grads(adaptive)
    if impl == "paper":
        def fn():
            return adaptive_conv_ext.adaptive_conv2d_paper(*adaptive)
        return fn, grads(adaptive)
    if impl == "conv2d":
        conv = [inp["x"], inp["conv_weight"], inp["bias"]]

        def fn():
            return F.conv2d(conv[0], conv[1], conv[2], padding=pad, groups=groups)
        return fn, grads(conv)
    raise ValueError(f"unknown implementation {impl!r}; choose from {', '.join(IMPLS)}")


def paper_subset(inp: Dict[str, torch.Tensor], o_sub: int):
    """The paper's loop on the first o_sub output channels only (its cost is linear
    in O), with its own leaves and upstream gradient: for extrapolating its time."""
    leaves = [inp["x"]] + [inp[k][:o_sub].detach().clone().requires_grad_() for k in ("weight", "kernel_bias", "bias")]
    grad_out = inp["grad_out"][:, :o_sub].contiguous()

    def fn():
        return adaptive_conv_ext.adaptive_conv2d_paper(*leaves)
    return fn, leaves, grad_out
