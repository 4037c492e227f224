"""The repeated-call path of adaptive_conv2d (functional._Plan): a call like an earlier one
skips the checks and, without gradients to record, calls the native operator below
autograd. It must give the bits, strides and errors the first call gives; issue 27 item 5.
Timing is benchmarks/overhead.py's business, not this file's."""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from conftest import make_problem

from adaptive_conv_ext import AdaptiveConv2d, _backends, adaptive_conv2d, functional

pytestmark = pytest.mark.skipif(
    _backends.native_unavailable_reason(torch.device("cpu")) is not None, reason="native CPU kernels not built"
)


@pytest.fixture
def no_plans(monkeypatch):
    """An empty plan table for the test (restored afterwards) and a count of the calls
    that went through validate() (the first call of a signature) and the fast path."""
    monkeypatch.setattr(functional, "_PLANS", {})
    counts = {"validate": 0, "fast": 0}
    validate, forward = functional.validate, _backends.NATIVE_FORWARD

    def counting_validate(*args, **kwargs):
        counts["validate"] += 1
        return validate(*args, **kwargs)

    def counting_forward(*args):
        counts["fast"] += 1
        return forward(*args)

    monkeypatch.setattr(functional, "validate", counting_validate)
    monkeypatch.setattr(_backends, "NATIVE_FORWARD", counting_forward)
    return counts


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride(), (a.stride(), b.stride())
    assert torch.equal(a, b)


CASES = {
    "1x1x1x1": dict(shape=dict(N=1, C=1, O=1, H=1, W=1, k=(1, 1)), kw={}),
    "lenet-mnist": dict(shape=dict(N=1, C=1, O=6, H=28, W=28, k=(5, 5)), kw=dict(padding=2)),
    "groups, stride, dilation": dict(shape=dict(N=2, C=4, O=6, H=11, W=10, groups=2),
                                     kw=dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    "same, even kernel": dict(shape=dict(N=1, C=2, O=3, H=7, W=6, k=(2, 2)), kw=dict(padding="same")),
    "reflect": dict(shape=dict(N=2, C=2, O=3, H=7, W=6), kw=dict(padding=1, padding_mode="reflect")),
    "no biases": dict(shape=dict(N=1, C=3, O=2, H=6, W=6, kernel_bias=False, bias=False), kw=dict(padding=1)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "unbatched"])
@pytest.mark.parametrize("case", list(CASES))
def test_repeated_call_gives_the_first_calls_bits_and_strides(no_plans, case, layout, dtype):
    x, w, kb, b = make_problem(**CASES[case]["shape"], dtype=dtype)
    if layout == "channels_last":
        x = x.clone(memory_format=torch.channels_last)
    elif layout == "unbatched":
        x = x[0]
    kw = CASES[case]["kw"]
    with torch.no_grad():
        first = adaptive_conv2d(x, w, kb, b, **kw)  # checked, through the autograd.Function
        assert no_plans == {"validate": 1, "fast": 0}
        again = adaptive_conv2d(x, w, kb, b, **kw)  # planned, the operator below autograd
        assert no_plans == {"validate": 1, "fast": 1}
    _same(again, first)
    # grad mode with nothing requiring grad: no graph either way
    again = adaptive_conv2d(x, w, kb, b, **kw)
    assert again.grad_fn is None and no_plans["fast"] == 2
    _same(again, first)


def test_output_memory_format_is_conv2d_s_on_the_repeated_call(no_plans):
    for C in (1, 3):
        x, w, kb, b = make_problem(N=2, C=C, O=1, H=7, W=6)
        x = x.clone(memory_format=torch.channels_last)
        expected = F.conv2d(x, w[..., 0, 0].contiguous(), b, padding=1)
        for _ in range(2):
            y = adaptive_conv2d(x, w, kb, b, padding=1)
            assert y.stride() == expected.stride()
    assert no_plans["fast"] == 2


def test_module_repeated_calls_and_a_dtype_change():
    layer = AdaptiveConv2d(1, 6, 5, padding=2)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        first, again = layer(x), layer(x)
        _same(again, first)
        layer.double()  # same Parameter objects, new dtype: a new signature
        y = layer(x.double())
    assert y.dtype == torch.float64
    ref = adaptive_conv2d(x.double(), layer.weight, layer.kernel_bias, layer.bias, padding=2, backend="reference")
    torch.testing.assert_close(y, ref)
    with pytest.raises(TypeError, match="weight dtype"):
        layer(x)  # float32 input, float64 parameters: no plan for that


def test_gradients_after_a_planned_call_match_the_first_calls(no_plans):
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=8, W=7, dtype=torch.float32)

    def grads():
        leaves = [t.clone().requires_grad_() for t in (x, w, kb, b)]
        y = adaptive_conv2d(*leaves, padding=1)
        assert y.grad_fn is not None
        y.backward(torch.ones_like(y))
        return y.detach(), [t.grad for t in leaves]

    y1, g1 = grads()
    with torch.no_grad():
        adaptive_conv2d(x, w, kb, b, padding=1)  # the plan exists now
    y2, g2 = grads()
    assert no_plans["validate"] == 1 and no_plans["fast"] == 1  # only the no_grad call
    _same(y2, y1)
    for a, b_ in zip(g2, g1):
        _same(a, b_)


def test_no_grad_with_parameters_requiring_grad_takes_the_fast_path(no_plans):
    layer = AdaptiveConv2d(2, 3, 3, padding=1)
    x = torch.randn(1, 2, 6, 6)
    y1 = layer(x)  # grad mode: the Function, and the plan
    with torch.no_grad():
        y2 = layer(x)
    assert y1.grad_fn is not None and y2.grad_fn is None and no_plans["fast"] == 1
    _same(y2, y1.detach())


def test_forward_mode_tangent_after_a_plan(no_plans):
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    adaptive_conv2d(x, w, kb, b, padding=1)
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        y = adaptive_conv2d(fwAD.make_dual(x, tangent), w, kb, b, padding=1)
        jvp = fwAD.unpack_dual(y).tangent
    assert jvp is not None and no_plans["fast"] == 0
    _, expected = torch.func.jvp(lambda t: adaptive_conv2d(t, w, kb, b, padding=1, backend="reference"),
                                 (x,), (tangent,))
    torch.testing.assert_close(jvp, expected)


def test_vmap_and_autocast_after_a_plan(no_plans):
    x, w, kb, b = make_problem(N=3, C=2, O=3, H=6, W=6, dtype=torch.float32)
    adaptive_conv2d(x[0], w, kb, b, padding=1)
    adaptive_conv2d(x[0], w, kb, b, padding=1)
    fast = no_plans["fast"]
    y = torch.vmap(lambda t: adaptive_conv2d(t, w, kb, b, padding=1))(x)
    _same(y, torch.stack([adaptive_conv2d(t, w, kb, b, padding=1) for t in x]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = adaptive_conv2d(x[0], w, kb, b, padding=1)
    assert z.dtype == torch.bfloat16
    assert no_plans["fast"] == fast + 3  # the three calls of the loop only


def test_tensor_subclasses_are_not_planned(no_plans):
    class Tagged(torch.Tensor):
        pass

    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    tagged = x.as_subclass(Tagged)
    for _ in range(2):
        y = adaptive_conv2d(tagged, w, kb, b, padding=1)
    assert no_plans == {"validate": 2, "fast": 0} and not functional._PLANS
    _same(y.as_subclass(torch.Tensor), adaptive_conv2d(x, w, kb, b, padding=1))


def test_meta_and_sparse_inputs(no_plans):
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    meta = [t.to("meta") for t in (x, w, kb, b)]
    for _ in range(2):
        assert adaptive_conv2d(*meta, padding=1).shape == (1, 3, 6, 6)
    assert no_plans == {"validate": 1, "fast": 1}
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        adaptive_conv2d(x.to_sparse(), w, kb, b, padding=1)  # not a crash in the plan's key


def test_the_autograd_exclusion_skips_the_operators_autograd_kernel():
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    x.requires_grad_()
    key = functional._AUTOGRAD_KEY
    assert not torch._C._dispatch_tls_is_dispatch_key_excluded(key)
    torch._C._dispatch_tls_set_dispatch_key_excluded(key, True)
    try:
        y = _backends.NATIVE_FORWARD(x, w, kb, b, (1, 1), (1, 1), (1, 1), 1)
    finally:
        torch._C._dispatch_tls_set_dispatch_key_excluded(key, False)
    assert y.grad_fn is None  # no Function recorded: the CPU kernel ran directly
    assert _backends.NATIVE_FORWARD(x, w, kb, b, (1, 1), (1, 1), (1, 1), 1).grad_fn is not None


def test_the_plan_table_is_bounded(no_plans, monkeypatch):
    monkeypatch.setattr(functional, "_MAX_PLANS", 2)
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    for pad in (0, 1, 2, 0, 1):
        adaptive_conv2d(x, w, kb, b, padding=pad)
        assert len(functional._PLANS) <= 2


# Arguments that must fail as on a first call although a plan for the valid call exists:
# equal as dict keys to a valid call's (True == 1, 1.0 == 1) or differing only in a tensor fact.
# OPERATOR: a fact a native plan's key leaves to the operator, which refuses the planned call.
OPERATOR = True
BAD = [
    (dict(stride=True), TypeError, "stride"),
    (dict(stride=1.0), TypeError, "stride"),
    (dict(stride=(1, True)), TypeError, "stride"),
    (dict(padding=(1.0, 1)), TypeError, "padding"),
    (dict(padding=(1, 1, 1)), TypeError, "padding"),
    (dict(dilation=(1, 1.0)), TypeError, "dilation"),
    (dict(groups=True), TypeError, "groups"),
    (dict(groups=1.0), TypeError, "groups"),
    (dict(backend="fast"), ValueError, "backend"),
    (dict(padding_mode="mirror"), ValueError, "padding_mode"),
    (dict(x=lambda x: x.double()), TypeError, "weight dtype"),
    (dict(x=lambda x: x.long()), TypeError, "input must have a floating dtype"),
    (dict(x=lambda x: x.numpy()), TypeError, "input must be a torch.Tensor"),
    (dict(x=lambda x: x[None]), ValueError, "input must be 4-D"),
    (dict(x=lambda x: x[:, :1]), ValueError, "groups|channels"),
    (dict(w=lambda w: w.to("meta")), ValueError, "weight is on meta", OPERATOR),
    (dict(kb=lambda kb: kb[:, :, :2]), ValueError, "kernel_bias must have shape", OPERATOR),
    (dict(b=lambda b: b.double()), TypeError, "bias dtype", OPERATOR),
    (dict(b=lambda b: b[:2]), ValueError, "bias must have shape", OPERATOR),
    (dict(kb=lambda kb: kb.double()), TypeError, "kernel_bias dtype", OPERATOR),
    (dict(kb=lambda kb: kb.to("meta")), ValueError, "kernel_bias is on meta", OPERATOR),
    (dict(b=lambda b: b.to("meta")), ValueError, "bias is on meta", OPERATOR),
    (dict(padding=10**6), ValueError, "padding"),
]


@pytest.mark.parametrize("bad, error, match, tried", [(*c, False)[:4] for c in BAD], ids=[str(i) for i in range(len(BAD))])
def test_bad_arguments_raise_after_a_plan_for_the_good_ones(no_plans, bad, error, match, tried):
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6, dtype=torch.float32)
    good = dict(stride=1, padding=1, dilation=1, groups=1)
    for geometry in (good, dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)):
        adaptive_conv2d(x, w, kb, b, **geometry)
        adaptive_conv2d(x, w, kb, b, **geometry)
    assert no_plans["fast"] == 2
    bad = dict(bad)
    tensors = {name: bad.pop(name, lambda t: t)(t) for name, t in (("x", x), ("w", w), ("kb", kb), ("b", b))}
    with pytest.raises(error, match=match):
        adaptive_conv2d(tensors["x"], tensors["w"], tensors["kb"], tensors["b"], **{**good, **bad})
    assert no_plans["fast"] == 2 + tried  # tried: the operator refused it, then the checks raised


@pytest.mark.parametrize("operand", ["weight", "kernel_bias", "bias"])
def test_the_operator_refuses_a_meta_operand_beside_a_cpu_input(operand):
    # The dispatcher sends such a call to the fake kernel: it must raise, not return
    # uninitialised memory shaped like the output (what the fast path relies on).
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    tensors = dict(weight=w, kernel_bias=kb, bias=b)
    tensors[operand] = tensors[operand].to("meta")
    with pytest.raises(RuntimeError, match=f"{operand} is on meta but input is on cpu"):
        _backends.NATIVE_FORWARD(x, tensors["weight"], tensors["kernel_bias"], tensors["bias"], (1, 1), (1, 1), (1, 1), 1)


def test_a_plan_of_a_backend_without_operand_checks_compares_the_operand_facts(no_plans):
    # Triton needs a GPU; here a native plan stands in for one whose backend checks nothing.
    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    adaptive_conv2d(x, w, kb, b, padding=1)
    (key, plan), = functional._PLANS.items()
    assert plan.operand_facts is None  # native: the operator checks them
    functional._PLANS[key] = plan._replace(operand_facts=functional._operand_facts(w, kb, b))
    adaptive_conv2d(x, w, kb, b, padding=1)
    assert no_plans == {"validate": 1, "fast": 1}  # same facts: planned
    with pytest.raises(TypeError, match="bias dtype"):
        adaptive_conv2d(x, w, kb, b.to(torch.float32 if b.dtype == torch.float64 else torch.float64), padding=1)
    assert no_plans == {"validate": 2, "fast": 1}  # other facts: not even tried


def test_direct_operator_calls_take_the_no_gradient_path_only_without_gradients():
    from adaptive_conv_ext._autograd import needs_autograd

    x, w, kb, b = make_problem(N=1, C=2, O=3, H=6, W=6)
    assert not needs_autograd((x, w, None, 3))
    assert needs_autograd((x.requires_grad_(), w, None))
    with torch.no_grad():
        assert not needs_autograd((x, w))
        with fwAD.dual_level():
            assert not needs_autograd((x.detach(), w))
            assert needs_autograd((fwAD.make_dual(x.detach(), torch.ones_like(x)), w))


def test_overhead_breakdown_runs_and_tabulates():
    from benchmarks import overhead

    result = overhead.measure([], rounds=1, round_s=1e-4)
    row = result["problems"][overhead.ONE_BY_ONE]
    for key in ("F.conv2d", "public", "module", "direct op", "op below autograd", "validate", "plan lookup"):
        assert row[key] > 0, key
    table = overhead.markdown({"this build": result})
    assert "adaptive_conv2d (public functional)" in table and "x)" in table
