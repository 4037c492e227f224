"""The native CUDA backend against the reference (SPEC sections 1-3).

Every check compares backend="native" on a CUDA device with
adaptive_conv_ext.reference.adaptive_conv2d_reference evaluated in float64 on upcast
copies of the same inputs, as ||out - ref|| / ||ref|| at the SPEC section 2 tolerances.
Skips cleanly without a GPU or without compiled CUDA kernels.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import pytest
import torch
from conftest import TOLERANCE as TOL  # SPEC section 2 (float32: exact tanh)
from conftest import cuda_native_available, rel_err

from adaptive_conv_ext import adaptive_conv2d
from adaptive_conv_ext._validation import out_size
from adaptive_conv_ext.reference import adaptive_conv2d_reference

pytestmark = pytest.mark.skipif(
    not cuda_native_available(), reason="needs a CUDA device and the compiled native CUDA kernels"
)

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]


class Cfg(NamedTuple):
    N: int
    C: int
    O: int
    H: int
    W: int
    k: Tuple[int, int]
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    kernel_bias: bool = True
    bias: bool = True


CONFIGS = {
    "3x3": Cfg(2, 4, 6, 13, 11, (3, 3), padding=(1, 1)),
    "stride2": Cfg(2, 3, 4, 15, 16, (3, 3), stride=(2, 2), kernel_bias=False),
    "dilation2": Cfg(2, 4, 4, 17, 14, (3, 3), padding=(2, 2), dilation=(2, 2), bias=False),
    "groups2": Cfg(2, 4, 6, 12, 12, (3, 3), padding=(1, 1), groups=2),
    "depthwise": Cfg(2, 6, 6, 12, 12, (3, 3), padding=(1, 1), groups=6),
    "rect2x3": Cfg(2, 3, 4, 11, 13, (2, 3), stride=(1, 2), padding=(0, 1)),
    "even4x4": Cfg(1, 2, 3, 12, 12, (4, 4), stride=(2, 2), padding=(1, 1), kernel_bias=False, bias=False),
    "5x5": Cfg(2, 2, 3, 20, 20, (5, 5), padding=(2, 2)),
    "7x7dw": Cfg(1, 4, 4, 30, 12, (7, 7), padding=(3, 3), groups=4),
    "1x1": Cfg(2, 3, 3, 7, 6, (1, 1)),
    "many_tiles": Cfg(2, 2, 3, 70, 45, (3, 3), padding=(1, 1)),
    "big_stride": Cfg(1, 2, 2, 37, 35, (3, 3), stride=(9, 7), padding=(2, 1)),
    "big_dilation": Cfg(1, 1, 2, 40, 40, (3, 3), padding=(30, 30), dilation=(30, 30)),
    "11x11": Cfg(1, 1, 2, 13, 13, (11, 11), padding=(5, 5)),
}

# SPEC section 3, with the batch cut so that the float64 reference (which materialises
# sigma and K) fits in memory; the full batch is exercised without the reference below.
SPEC_SHAPES = {
    "lenet-mnist": (Cfg(256, 1, 6, 28, 28, (5, 5), padding=(2, 2)), 8),
    "resnet-stem": (Cfg(128, 3, 16, 32, 32, (3, 3), padding=(1, 1)), 4),
    "mid-64": (Cfg(32, 64, 64, 56, 56, (3, 3), padding=(1, 1)), 2),
    "depthwise-256": (Cfg(32, 256, 256, 56, 56, (3, 3), padding=(1, 1), groups=256), 2),
    "depthwise-k7": (Cfg(32, 128, 128, 28, 28, (7, 7), padding=(3, 3), groups=128), 2),
}


class Inputs(NamedTuple):
    x: torch.Tensor
    w: torch.Tensor
    kb: Optional[torch.Tensor]
    b: Optional[torch.Tensor]
    g: torch.Tensor  # grad_output


def make_inputs(cfg: Cfg, dtype: torch.dtype, seed: int = 0, N: Optional[int] = None) -> Inputs:
    """Random inputs on the GPU in `dtype`; sigma is O(1) so tanh is not saturated."""
    gen = torch.Generator().manual_seed(seed)
    N = cfg.N if N is None else N
    kH, kW = cfg.k
    T = kH * kW
    Ho, Wo = out_size((cfg.H, cfg.W), cfg.k, cfg.stride, cfg.padding, cfg.dilation)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to("cuda", dtype)

    return Inputs(
        x=rnd(N, cfg.C, cfg.H, cfg.W),
        w=rnd(cfg.O, cfg.C // cfg.groups, kH, kW, kH, kW, scale=1.0 / math.sqrt(T)),
        kb=rnd(cfg.O, cfg.C // cfg.groups, kH, kW, scale=0.5) if cfg.kernel_bias else None,
        b=rnd(cfg.O, scale=0.5) if cfg.bias else None,
        g=rnd(N, cfg.O, Ho, Wo),
    )


def conv_args(cfg: Cfg):
    return dict(stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups)


def run(inp: Inputs, cfg: Cfg, backend: str, upcast: bool = False, chunk: Optional[int] = None):
    """Forward and the gradients of every tensor input, as a tuple (y, dx, dw, dkb, db)."""
    leaves = [t for t in (inp.x, inp.w, inp.kb, inp.b)]
    if upcast:
        leaves = [None if t is None else t.double() for t in leaves]
    leaves = [None if t is None else t.detach().requires_grad_(True) for t in leaves]
    x, w, kb, b = leaves
    if backend == "reference":
        y = adaptive_conv2d_reference(x, w, kb, b, out_channel_chunk=chunk, **conv_args(cfg))
    else:
        y = adaptive_conv2d(x, w, kb, b, backend=backend, **conv_args(cfg))
    g = inp.g.double() if upcast else inp.g
    wanted = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(y, wanted, g))
    out = [y.detach()] + [None if t is None else next(grads) for t in leaves]
    return tuple(out)


def check_against_reference(cfg: Cfg, dtype: torch.dtype, N: Optional[int] = None, chunk=None, seed=0):
    inp = make_inputs(cfg, dtype, seed=seed, N=N)
    got = run(inp, cfg, "native")
    ref = run(inp, cfg, "reference", upcast=True, chunk=chunk)
    names = ("output", "grad_input", "grad_weight", "grad_kernel_bias", "grad_bias")
    errors = {}
    for name, a, r in zip(names, got, ref):
        if r is None:
            assert a is None
            continue
        assert a.dtype == dtype and a.shape == r.shape, name
        assert torch.isfinite(a).all(), f"{name} has non-finite elements (unwritten output?)"
        errors[name] = rel_err(a, r)
    bad = {k: v for k, v in errors.items() if not v <= TOL[dtype]}
    assert not bad, f"relative errors above {TOL[dtype]:g}: {bad} (all: {errors})"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_reference(name, dtype):
    check_against_reference(CONFIGS[name], dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(SPEC_SHAPES))
def test_spec_shapes_match_reference(name, dtype):
    cfg, n_small = SPEC_SHAPES[name]
    check_against_reference(cfg, dtype, N=n_small, chunk=16)


@pytest.mark.parametrize("name", list(SPEC_SHAPES))
def test_spec_shapes_full_batch(name):
    """Full SPEC batch (big grids, many splits/tiles): every output element written and
    finite, and the batch-summed weight gradient agrees with two half-batch runs."""
    cfg, _ = SPEC_SHAPES[name]
    inp = make_inputs(cfg, torch.float32, seed=1)
    y, dx, dw, dkb, db = run(inp, cfg, "native")
    for t in (y, dx, dw, dkb, db):
        assert torch.isfinite(t).all()
    h = cfg.N // 2
    halves = [
        run(Inputs(inp.x[s], inp.w, inp.kb, inp.b, inp.g[s]), cfg, "native")
        for s in (slice(0, h), slice(h, None))
    ]
    assert rel_err(halves[0][0], y[:h]) < 1e-6
    assert rel_err(halves[0][2] + halves[1][2], dw) < 1e-6
    assert rel_err(halves[0][3] + halves[1][3], dkb) < 1e-6


def test_gradcheck_float64():
    cfg = Cfg(1, 2, 2, 6, 5, (3, 3), padding=(1, 1))
    inp = make_inputs(cfg, torch.float64)
    args = [t.detach().requires_grad_(True) for t in (inp.x, inp.w, inp.kb, inp.b)]

    def f(x, w, kb, b):
        return adaptive_conv2d(x, w, kb, b, backend="native", **conv_args(cfg))

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize(
    "name", ["many_tiles", "3x3", "7x7dw", "rect2x3"]
)  # workspace gather for grad_input, per-split workspaces for grad_weight
def test_deterministic_bitwise(name):
    cfg = CONFIGS[name]
    inp = make_inputs(cfg, torch.float32, seed=3)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        first = run(inp, cfg, "native")
        second = run(inp, cfg, "native")
    finally:
        torch.use_deterministic_algorithms(prev)
    for a, b in zip(first[1:4], second[1:4]):
        assert torch.equal(a, b)
    ref = run(inp, cfg, "reference", upcast=True)
    for a, r in zip(first, ref):
        if r is not None:
            assert rel_err(a, r) <= TOL[torch.float32]


def test_batch_zero():
    cfg = Cfg(0, 3, 4, 9, 9, (3, 3), padding=(1, 1))
    inp = make_inputs(cfg, torch.float32)
    y, dx, dw, dkb, db = run(inp, cfg, "native")
    assert y.shape == (0, 4, 9, 9)
    assert dx.shape == inp.x.shape
    assert torch.equal(dw, torch.zeros_like(inp.w))
    assert torch.equal(dkb, torch.zeros_like(inp.kb))
    assert torch.equal(db, torch.zeros_like(inp.b))


def test_non_contiguous_inputs():
    cfg = CONFIGS["3x3"]
    inp = make_inputs(cfg, torch.float32)
    x_cl = inp.x.contiguous(memory_format=torch.channels_last)
    w_nc = inp.w.transpose(0, 1).contiguous().transpose(0, 1)  # same values, other strides
    assert not w_nc.is_contiguous()
    got = run(Inputs(x_cl, w_nc, inp.kb, inp.b, inp.g), cfg, "native")
    ref = run(inp, cfg, "reference", upcast=True)
    for a, r in zip(got, ref):
        assert rel_err(a, r) <= TOL[torch.float32]


def test_only_some_gradients():
    """output_mask: input gradient alone, and weight gradients alone."""
    cfg = CONFIGS["groups2"]
    inp = make_inputs(cfg, torch.float32)
    ref = run(inp, cfg, "reference", upcast=True)
    x = inp.x.detach().requires_grad_(True)
    y = adaptive_conv2d(x, inp.w, inp.kb, inp.b, backend="native", **conv_args(cfg))
    (dx,) = torch.autograd.grad(y, [x], inp.g)
    assert rel_err(dx, ref[1]) <= TOL[torch.float32]
    w = inp.w.detach().requires_grad_(True)
    y = adaptive_conv2d(inp.x, w, None, None, backend="native", **conv_args(cfg))
    (dw,) = torch.autograd.grad(y, [w], inp.g)
    ref_nokb = run(Inputs(inp.x, inp.w, None, None, inp.g), cfg, "reference", upcast=True)
    assert rel_err(dw, ref_nokb[2]) <= TOL[torch.float32]


def test_nan_propagates_only_where_it_touches():
    cfg = CONFIGS["stride2"]
    inp = make_inputs(cfg, torch.float32)
    x = inp.x.clone()
    x[0, 1, 7, 8] = float("nan")
    x[1, 2, 0, 0] = float("inf")
    bad = Inputs(x, inp.w, inp.kb, inp.b, inp.g)
    got = run(bad, cfg, "native")
    ref = run(bad, cfg, "reference", upcast=True)
    for i in (0, 1):  # output and grad_input: the same non-finite pattern as the reference
        assert torch.equal(torch.isfinite(got[i]), torch.isfinite(ref[i]))
    assert torch.isfinite(got[0]).any() and not torch.isfinite(got[0]).all()
