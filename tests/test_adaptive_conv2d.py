"""The operator against SPEC section 1 and 2: native CPU vs the unfold reference
vs a float64 loop over the formulas, gradients, the paper's procedure, opcheck,
bad input, NaN locality, random shapes."""

import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TOLERANCE, make_problem, rel_err
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loop_reference import loop_forward_backward

import adaptive_conv_ext as ace
from adaptive_conv_ext.reference import adaptive_conv2d_reference

# (N, C, O, H, W, (kH, kW), stride, padding, dilation, groups)
CONFIGS = {
    "basic": (2, 4, 6, 9, 8, (3, 3), 1, 1, 1, 1),
    "stride2": (2, 3, 4, 11, 10, (3, 3), 2, 1, 1, 1),
    "rect-stride-pad-dil": (2, 4, 4, 12, 11, (3, 2), (2, 1), (1, 0), (2, 1), 2),
    "groups": (1, 6, 9, 8, 8, (3, 3), 1, 1, 1, 3),
    "depthwise": (2, 4, 4, 7, 9, (3, 3), 1, 1, 1, 4),
    "even-k": (2, 3, 2, 10, 10, (4, 4), 1, 2, 1, 1),
    "1x1": (2, 5, 3, 6, 7, (1, 1), 1, 0, 1, 1),
    "k5-dil2": (1, 2, 3, 13, 13, (5, 5), 1, 4, 2, 1),
    "no-pad-big-stride": (3, 2, 2, 9, 9, (3, 3), 3, 0, 1, 1),
}


def run(backend, x, w, kb, b, cfg, gy=None):
    """Output and the gradients of (x, w, kb, b) for upstream gradient gy."""
    _, _, _, _, _, _, s, p, d, g = cfg
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, w, kb, b)]
    y = ace.adaptive_conv2d(*leaves, s, p, d, g, backend=backend)
    if gy is None:
        return y.detach(), None
    grads = torch.autograd.grad(y, [t for t in leaves if t is not None], gy.to(y.dtype))
    return y.detach(), list(grads)


def problem(cfg, dtype=torch.float64, seed=0):
    N, C, O, H, W, k, _, _, _, g = cfg
    return make_problem(N, C, O, H, W, k, g, dtype=dtype, seed=seed)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_native_matches_reference(name, dtype):
    # float16/bfloat16 inputs are computed in float32 and rounded at the end.
    cfg = CONFIGS[name]
    x, w, kb, b = problem(cfg, dtype)
    x64, w64, kb64, b64 = (t.double() for t in (x, w, kb, b))
    y_ref, _ = run("reference", x64, w64, kb64, b64, cfg)
    gy = torch.randn(y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y_ref, g_ref = run("reference", x64, w64, kb64, b64, cfg, gy)
    y, grads = run("native", x, w, kb, b, cfg, gy)
    assert y.dtype == dtype and y.shape == y_ref.shape
    tol = TOLERANCE[dtype]
    assert rel_err(y, y_ref) < tol
    for what, got, want in zip(("input", "weight", "kernel_bias", "bias"), grads, g_ref):
        assert got.dtype == dtype
        assert rel_err(got, want) < tol, what


@pytest.mark.parametrize("name", ["basic", "rect-stride-pad-dil", "groups", "even-k", "1x1"])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_matches_float64_loop_over_spec(name, backend):
    cfg = CONFIGS[name]
    N, C, O, H, W, k, s, p, d, g = cfg
    x, w, kb, b = problem(cfg)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    y_ref, grads_ref = run("reference", x, w, kb, b, cfg)
    gy = torch.randn(y_ref.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y_loop, g_loop = loop_forward_backward(
        x.numpy(), w.numpy(), kb.numpy(), b.numpy(), gy.numpy(), pair(s), pair(p), pair(d), g
    )
    y, grads = run(backend, x, w, kb, b, cfg, gy)
    assert rel_err(y, torch.from_numpy(y_loop)) < 1e-12
    for what, got, want in zip(("input", "weight", "kernel_bias", "bias"), grads, g_loop):
        assert rel_err(got, torch.from_numpy(np.asarray(want))) < 1e-12, what


@pytest.mark.parametrize("with_biases", [True, False])
@pytest.mark.parametrize("name", ["basic", "rect-stride-pad-dil"])
def test_gradcheck_native_float64(name, with_biases):
    N, C, O, H, W, k, s, p, d, g = CONFIGS[name]
    x, w, kb, b = make_problem(1, C, O, min(H, 6), min(W, 6), k, g, kernel_bias=with_biases, bias=with_biases)
    inputs = tuple(t.requires_grad_() for t in (x, w, kb, b) if t is not None)

    def f(x, w, *rest):
        kb, b = rest if rest else (None, None)
        return ace.adaptive_conv2d(x, w, kb, b, s, p, d, g, backend="native")

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


def test_gradcheck_only_some_inputs_require_grad():
    # output_mask skips gradients nobody asked for; the others must stay right.
    x, w, kb, b = make_problem(1, 2, 3, 5, 5)
    f = lambda w: ace.adaptive_conv2d(x, w, kb, b, 1, 1, backend="native")  # noqa: E731
    assert torch.autograd.gradcheck(f, (w.requires_grad_(),), eps=1e-6, atol=1e-8)
    g = lambda x: ace.adaptive_conv2d(x, w.detach(), kb, b, 1, 1, backend="native")  # noqa: E731
    assert torch.autograd.gradcheck(g, (x.requires_grad_(),), eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_fidelity_to_papers_procedure(k):
    # The authors' loop (SPEC section 1, "The paper's own layout"): odd k, stride 1, padding k//2.
    x, w, kb, b = make_problem(2, 3, 2, 7, 6, (k, k))
    y_paper = ace.adaptive_conv2d_paper(x, w, kb, b)
    for backend in ("native", "reference"):
        y = ace.adaptive_conv2d(x, w, kb, b, padding=k // 2, backend=backend)
        assert rel_err(y, y_paper) < 1e-12, backend


def test_paper_generator_layout():
    # generator weight[k*v + u, 0, a, b] is Q[o, c, u, v, a, b]; bias[k*v + u] is beta[o, c, u, v]
    k = 3
    q = torch.randn(k, k, k, k, dtype=torch.float64)
    beta = torch.randn(k, k, dtype=torch.float64)
    gen_w, gen_b = ace.paper.generator_from_weight(q, beta)
    for u in range(k):
        for v in range(k):
            assert torch.equal(gen_w[k * v + u, 0], q[u, v])
            assert gen_b[k * v + u] == beta[u, v]
    q2, beta2 = ace.paper.weight_from_generator(gen_w, gen_b)
    assert torch.equal(q2, q) and torch.equal(beta2, beta)


def _opcheck_args(requires_grad=False):
    x, w, kb, b = make_problem(2, 4, 4, 6, 5, (3, 2), groups=2, dtype=torch.float32)
    fwd = (x, w, kb, b, [1, 2], [1, 0], [1, 1], 2)
    gy = torch.randn(2, 4, 6, 2)
    bwd = (gy, x, w, kb, [1, 2], [1, 0], [1, 1], 2, [True, True])
    return fwd, bwd


def test_opcheck_registered_ops():
    fwd, bwd = _opcheck_args()
    ops = torch.ops.adaptive_conv_ext
    torch.library.opcheck(ops.adaptive_conv2d_forward.default, fwd)
    torch.library.opcheck(ops.adaptive_conv2d_forward.default, fwd[:3] + (None,) + fwd[4:])
    torch.library.opcheck(ops.adaptive_conv2d_forward.default, fwd[:2] + (None, None) + fwd[4:])
    torch.library.opcheck(ops.adaptive_conv2d_backward.default, bwd)
    torch.library.opcheck(ops.adaptive_conv2d_backward.default, bwd[:-1] + ([False, True],))
    torch.library.opcheck(ops.adaptive_conv2d_backward.default, bwd[:-1] + ([True, False],))


def test_backward_op_output_mask():
    _, bwd = _opcheck_args()
    op = torch.ops.adaptive_conv_ext.adaptive_conv2d_backward
    gx, gw, gkb = op(*bwd)
    gx2, gw2, gkb2 = op(*bwd[:-1], [True, False])
    assert torch.equal(gx, gx2) and gw2.numel() == 0 and gkb2.numel() == 0
    gx3, gw3, gkb3 = op(*bwd[:-1], [False, True])
    assert gx3.numel() == 0 and torch.equal(gw, gw3) and torch.equal(gkb, gkb3)


def test_non_contiguous_and_channels_last_inputs():
    cfg = CONFIGS["rect-stride-pad-dil"]
    x, w, kb, b = problem(cfg)
    y_ref, _ = run("reference", x, w, kb, b, cfg)
    gy = torch.randn(y_ref.shape, dtype=torch.float64)
    y_ref, g_ref = run("reference", x, w, kb, b, cfg, gy)
    variants = {
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "transposed": x.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": torch.stack([x, x], dim=-1)[..., 0],  # every other element of a buffer
    }
    for name, xv in variants.items():
        assert not xv.is_contiguous()
        y, grads = run("native", xv, w.transpose(4, 5).contiguous().transpose(4, 5), kb, b, cfg, gy)
        assert rel_err(y, y_ref) < 1e-12, name
        for got, want in zip(grads, g_ref):
            assert rel_err(got, want) < 1e-12, name
    y_cl = ace.adaptive_conv2d(variants["channels_last"], w, kb, b, *cfg[6:10])
    assert y_cl.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_batch_of_zero(backend):
    x, w, kb, b = make_problem(0, 4, 6, 9, 8)
    x.requires_grad_(), w.requires_grad_(), kb.requires_grad_(), b.requires_grad_()
    y = ace.adaptive_conv2d(x, w, kb, b, padding=1, backend=backend)
    assert y.shape == (0, 6, 9, 8)
    y.sum().backward()
    assert x.grad.shape == x.shape
    for t in (w, kb, b):
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_unbatched_input():
    x, w, kb, b = make_problem(1, 3, 4, 6, 6)
    y = ace.adaptive_conv2d(x[0], w, kb, b, padding=1)
    assert y.shape == (4, 6, 6)
    assert rel_err(y, ace.adaptive_conv2d(x, w, kb, b, padding=1)[0]) < 1e-15


def test_every_output_element_is_written():
    # With deterministic algorithms on, torch fills torch.empty with NaN: any element
    # a kernel forgets to write shows up as NaN.
    x, w, kb, b = make_problem(3, 4, 6, 13, 11, (3, 3), groups=2, dtype=torch.float32)
    for t in (x, w, kb, b):
        t.requires_grad_()
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.empty(4).isnan().all()  # the poison is on
        y = ace.adaptive_conv2d(x, w, kb, b, stride=2, padding=1, groups=2, backend="native")
        grads = torch.autograd.grad(y, (x, w, kb, b), torch.randn_like(y))
    finally:
        torch.use_deterministic_algorithms(prev)
    assert torch.isfinite(y).all()
    for g in grads:
        assert torch.isfinite(g).all()


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_nan_stays_inside_the_outputs_it_touches(backend):
    N, C, O, H, W, k, s, p, d, g = 1, 2, 2, 12, 12, (3, 3), 1, 1, 2, 1
    x, w, kb, b = make_problem(N, C, O, H, W, k, g)
    x[0, 1, 5, 7] = float("nan")
    x.requires_grad_()
    y = ace.adaptive_conv2d(x, w, kb, b, s, p, d, g, backend=backend)
    # Outputs whose patch covers the NaN: a plain convolution of the NaN indicator.
    indicator = torch.isnan(x.detach()).double()
    ones = torch.ones(O, C, *k, dtype=torch.float64)
    touched = F.conv2d(indicator, ones, stride=s, padding=p, dilation=d) > 0
    assert touched.any() and not touched.all()
    assert torch.equal(torch.isnan(y.detach()), touched)
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    # grad_input can only be NaN at inputs read by a touched output.
    reach = F.conv_transpose2d(touched.double(), ones, stride=s, padding=p, dilation=d) > 0
    assert not torch.isnan(gx[~reach]).any()
    assert torch.isnan(gx[reach]).any()


def test_dispatch_auto_uses_native_on_cpu():
    assert ace.available_backends("cpu")["native"] is None
    x, w, kb, b = make_problem(1, 2, 2, 5, 5)
    assert torch.equal(ace.adaptive_conv2d(x, w, kb, b, padding=1), ace.adaptive_conv2d(x, w, kb, b, padding=1, backend="native"))


# ----------------------------------------------------------------- bad input
def _good():
    x, w, kb, b = make_problem(2, 4, 6, 8, 8, groups=2, dtype=torch.float32)
    return dict(input=x, weight=w, kernel_bias=kb, bias=b, stride=1, padding=1, dilation=1, groups=2)


BAD_INPUTS = {
    "input not 4-D": (dict(input=torch.randn(8, 8)), ValueError, "input"),
    "input 5-D": (dict(input=torch.randn(1, 2, 4, 8, 8)), ValueError, "input"),
    "input not a tensor": (dict(input=np.zeros((2, 4, 8, 8))), TypeError, "input"),
    "weight not 6-D": (dict(weight=torch.randn(6, 2, 3, 3)), ValueError, "weight"),
    "weight trailing dims": (dict(weight=torch.randn(6, 2, 3, 3, 3, 2)), ValueError, "weight"),
    "channels vs groups": (dict(weight=torch.randn(6, 3, 3, 3, 3, 3)), ValueError, "groups"),
    "groups not dividing C": (dict(groups=3, weight=torch.randn(6, 1, 3, 3, 3, 3)), ValueError, "groups"),
    "groups not dividing O": (dict(weight=torch.randn(5, 2, 3, 3, 3, 3), kernel_bias=None, bias=None), ValueError, "groups"),
    "groups zero": (dict(groups=0), ValueError, "groups"),
    "groups float": (dict(groups=2.0), TypeError, "groups"),
    "kernel_bias shape": (dict(kernel_bias=torch.randn(6, 2, 3)), ValueError, "kernel_bias"),
    "bias shape": (dict(bias=torch.randn(5)), ValueError, "bias"),
    "stride zero": (dict(stride=0), ValueError, "stride"),
    "stride negative pair": (dict(stride=(1, -1)), ValueError, "stride"),
    "stride triple": (dict(stride=(1, 1, 1)), TypeError, "stride"),
    "stride float": (dict(stride=1.5), TypeError, "stride"),
    "dilation zero": (dict(dilation=0), ValueError, "dilation"),
    "padding negative": (dict(padding=-1), ValueError, "padding"),
    "kernel larger than padded input": (dict(input=torch.randn(2, 4, 2, 8), padding=0), ValueError, "kernel"),
    "mixed dtypes": (dict(weight=torch.randn(6, 2, 3, 3, 3, 3, dtype=torch.float64)), TypeError, "weight"),
    "mixed dtype bias": (dict(bias=torch.randn(6, dtype=torch.float64)), TypeError, "bias"),
    "integer input": (dict(input=torch.ones(2, 4, 8, 8, dtype=torch.int32)), TypeError, "input"),
    "complex input": (dict(input=torch.ones(2, 4, 8, 8, dtype=torch.complex64)), TypeError, "input"),
    "mixed devices": (dict(bias=torch.randn(6, device="meta")), ValueError, "bias"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("backend", ["auto", "native", "reference"])
def test_bad_input_raises_clear_error(case, backend):
    change, error, word = BAD_INPUTS[case]
    args = {**_good(), **change}
    with pytest.raises(error, match=word):
        ace.adaptive_conv2d(**args, backend=backend)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        ace.adaptive_conv2d(**_good(), backend="cudnn")


def test_unavailable_backend_says_how_to_get_it():
    if ace.available_backends("cpu")["triton"] is None:
        pytest.skip("Triton runs on CPU tensors here (interpreter mode)")
    # how to get it: the interpreter switch where triton is installed, else the install
    how = "TRITON_INTERPRET" if importlib.util.find_spec("triton") else "pip install triton"
    with pytest.raises(ace.BackendUnavailableError, match=how) as info:
        ace.adaptive_conv2d(**_good(), backend="triton")
    assert isinstance(info.value, (RuntimeError, ValueError))


def test_direct_op_call_checks_arguments():
    # The registered op guards its own memory accesses for callers that skip Python.
    x, w, kb, b = make_problem(1, 4, 6, 8, 8, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="weight"):
        torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w[:, :2], kb, b, [1, 1], [1, 1], [1, 1], 1)
    with pytest.raises(RuntimeError, match="stride"):
        torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, kb, b, [0, 1], [1, 1], [1, 1], 1)


# ------------------------------------------------------------- random shapes
@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    C = groups * draw(st.integers(1, 3))
    O = groups * draw(st.integers(1, 3))
    kH, kW = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sH, sW = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dH, dW = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pH, pW = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    H = draw(st.integers(max(1, dH * (kH - 1) + 1 - 2 * pH), 12))
    W = draw(st.integers(max(1, dW * (kW - 1) + 1 - 2 * pW), 12))
    N = draw(st.integers(0, 3))
    kernel_bias, bias = draw(st.booleans()), draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return (N, C, O, H, W, (kH, kW), (sH, sW), (pH, pW), (dH, dW), groups), kernel_bias, bias, seed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_problems())
def test_random_problems_match_reference(problem_args):
    cfg, with_kb, with_b, seed = problem_args
    N, C, O, H, W, k, s, p, d, g = cfg
    x, w, kb, b = make_problem(N, C, O, H, W, k, g, kernel_bias=with_kb, bias=with_b, seed=seed)
    present = [t for t in (x, w, kb, b) if t is not None]
    leaves_n = [t.clone().requires_grad_() for t in present]
    leaves_r = [t.clone().requires_grad_() for t in present]

    def call(leaves, backend):
        it = iter(leaves)
        xx, ww = next(it), next(it)
        kk = next(it) if with_kb else None
        bb = next(it) if with_b else None
        return ace.adaptive_conv2d(xx, ww, kk, bb, s, p, d, g, backend=backend)

    y_n, y_r = call(leaves_n, "native"), call(leaves_r, "reference")
    assert y_n.shape == y_r.shape
    if y_r.numel() == 0:
        return
    assert rel_err(y_n, y_r) < 1e-12
    gy = torch.randn(y_r.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    g_n = torch.autograd.grad(y_n, leaves_n, gy)
    g_r = torch.autograd.grad(y_r, leaves_r, gy)
    for a, r in zip(g_n, g_r):
        assert rel_err(a, r) < 1e-12


# -------------------------------------------------------------------- module
def test_module_parameters_init_and_repr():
    torch.manual_seed(0)
    m = ace.AdaptiveConv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    assert m.weight.shape == (6, 2, 3, 2, 3, 2)
    assert m.kernel_bias.shape == (6, 2, 3, 2)
    assert m.bias.shape == (6,)
    # default nn.Conv2d(1, kH*kW, (kH, kW)) init: uniform(+-1/sqrt(kH*kW)) for weight and bias
    bound = 1 / math.sqrt(6)
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
    assert m.kernel_bias.abs().max() <= bound
    assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    r = repr(m)
    assert "AdaptiveConv2d(4, 6, kernel_size=(3, 2), stride=(2, 2), padding=(1, 1), groups=2)" in r
    m2 = ace.AdaptiveConv2d(3, 3, 3, bias=False, kernel_bias=False)
    assert m2.bias is None and m2.kernel_bias is None and "bias=False" in repr(m2)
    assert set(dict(m2.named_parameters())) == {"weight"}
    y = m(torch.randn(2, 4, 9, 9))
    assert y.shape == (2, 6, 5, 5)
    y.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_module_matches_functional_and_loads_state_dict():
    m = ace.AdaptiveConv2d(3, 4, 3, padding=1, dtype=torch.float64)
    m2 = ace.AdaptiveConv2d(3, 4, 3, padding=1, dtype=torch.float64, backend="reference")
    m2.load_state_dict(m.state_dict())
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    assert rel_err(m(x), m2(x)) < 1e-12
    assert rel_err(m(x), ace.adaptive_conv2d(x, m.weight, m.kernel_bias, m.bias, padding=1)) == 0


@pytest.mark.parametrize(
    "kwargs",
    [dict(in_channels=3, out_channels=4, groups=2), dict(in_channels=0), dict(kernel_size=0), dict(backend="nope")],
)
def test_module_bad_arguments(kwargs):
    args = dict(in_channels=4, out_channels=4, kernel_size=3)
    args.update(kwargs)
    with pytest.raises(ValueError):
        ace.AdaptiveConv2d(**args)


# ------------------------------------------------------- every CPU kernel build
_ISA_CHECK = """
import torch, adaptive_conv_ext as ace
from adaptive_conv_ext.reference import adaptive_conv2d_reference as ref
torch.manual_seed(0)
for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
    # 4 outputs (direct tiles), 12 outputs per group (staged tiles), no kernel bias, and an
    # input without gradient (a first layer)
    for s, p, d, g, k, W, O, has_kb, x_grad in (
            (1, 1, 1, 1, 3, 70, 4, True, True), ((2, 3), (2, 0), (1, 2), 2, 5, 33, 4, True, True),
            (1, 1, 1, 1, 3, 13, 12, True, True), (1, 1, 1, 1, 3, 13, 12, False, True),
            (1, 1, 1, 1, 3, 70, 4, True, False), (1, 1, 1, 1, 3, 13, 12, True, False)):
        x = torch.randn(2, 4, 11, W, dtype=torch.float64, requires_grad=x_grad)
        w = (torch.randn(O, 4 // g, k, k, k, k, dtype=torch.float64) * 0.2).requires_grad_()
        kb = torch.randn(O, 4 // g, k, k, dtype=torch.float64, requires_grad=True) if has_kb else None
        full = (x, w, kb)
        low = tuple(t.detach().to(dtype).requires_grad_(t.requires_grad) if t is not None else None for t in full)
        trained = lambda ts: [t for t in ts if t is not None and t.requires_grad]
        yr = ref(*full, None, s, p, d, g)
        gy = torch.randn_like(yr)
        want = (yr,) + torch.autograd.grad(yr, trained(full), gy)
        y = ace.adaptive_conv2d(*low, None, s, p, d, g, backend="native")
        got = (y,) + torch.autograd.grad(y, trained(low), gy.to(dtype))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            err = ((a.double() - b).norm() / b.norm()).item()
            assert err < tol, (dtype, s, O, has_kb, x_grad, err)
print("ok", torch.backends.cpu.get_cpu_capability())
"""


@pytest.mark.parametrize("capability", ["default", "avx2", "avx512"])
def test_every_cpu_kernel_build(capability):
    # The kernels are compiled once per instruction set and chosen from torch's
    # ATEN_CPU_CAPABILITY, which is read at start-up: check each build in a child.
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env, capture_output=True, text=True, check=True,
    )
    if probe.stdout.strip().lower() != capability:
        pytest.skip(f"this CPU cannot run {capability} (torch chose {probe.stdout.strip()})")
    run = subprocess.run(
        [sys.executable, "-c", _ISA_CHECK],
        env=env, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().lower() == f"ok {capability}"
