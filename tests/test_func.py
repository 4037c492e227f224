"""torch.func on the fused op (issue 29 item 2): vmap over input, weights or both,
per-sample gradients (vmap(grad(...))), forward mode (torch.func.jvp, forward_ad),
jacrev/jacfwd/hessian, and the module through functional_call. float64, CPU native
backend, against the reference. `pytest -s` prints the table of max abs errors.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap

import adaptive_conv_ext
from adaptive_conv_ext import _backends, _func, adaptive_conv2d
from conftest import make_problem

pytestmark = pytest.mark.skipif(
    adaptive_conv_ext.available_backends("cpu")["native"] is not None, reason="needs the compiled CPU operators"
)

TOLERANCE = 1e-11  # max abs error; every value here is O(1)-O(100)
B = 3  # the vmapped size

# (problem, conv kwargs)
GEOMETRIES = {
    "stride-pad-rect": (dict(N=2, C=2, O=3, H=5, W=6, k=(2, 3)), dict(stride=(1, 2), padding=1)),
    "groups-dilation": (dict(N=2, C=4, O=4, H=6, W=5, groups=2), dict(padding=(1, 0), dilation=(2, 1), groups=2)),
    "no-biases-stride2": (dict(N=1, C=2, O=2, H=5, W=5, kernel_bias=False, bias=False), dict(stride=2, padding=1)),
}
NAMES = ("input", "weight", "kernel_bias", "bias")

_ERRORS = {}


@pytest.fixture(scope="module", autouse=True)
def error_table():
    yield
    if _ERRORS:
        width = max(map(len, _ERRORS))
        print("\n\ntorch.func on the fused op (native CPU, float64): max |fused - reference|")
        for key, err in _ERRORS.items():
            print(f"  {key:<{width}}  {err:.1e}")


def check(key, out, ref):
    """Assert out == ref (pytrees of tensors) within TOLERANCE; record the error."""
    outs, refs = torch.utils._pytree.tree_leaves(out), torch.utils._pytree.tree_leaves(ref)
    assert len(outs) == len(refs), key
    err = 0.0
    for o, r in zip(outs, refs):
        assert o.shape == r.shape, (key, o.shape, r.shape)
        err = max(err, (o - r).abs().max().item() if o.numel() else 0.0)
    _ERRORS[key] = max(err, _ERRORS.get(key, 0.0))
    assert err < TOLERANCE, (key, err)


def conv_fn(backend, conv):
    def f(x, w, kb, b):
        return adaptive_conv2d(x, w, kb, b, **conv, backend=backend)

    return f


def batched(t, seed):
    """B different copies of t (None stays None)."""
    if t is None:
        return None
    gen = torch.Generator().manual_seed(seed)
    return t + 0.1 * torch.randn((B,) + t.shape, generator=gen, dtype=t.dtype)


VMAPPED = {"input": (0,), "weights": (1, 2, 3), "both": (0, 1, 2, 3), "input-weight": (0, 1)}


@pytest.mark.parametrize("which", VMAPPED)
@pytest.mark.parametrize("name", GEOMETRIES)
def test_vmap_and_per_element_gradients_match_reference(name, which):
    problem, conv = GEOMETRIES[name]
    tensors = list(make_problem(**problem))
    in_dims = [None] * 4
    for i in VMAPPED[which]:
        if tensors[i] is not None:
            tensors[i], in_dims[i] = batched(tensors[i], i), 0
    live = tuple(i for i, t in enumerate(tensors) if t is not None)

    def loss(backend):
        return lambda *ts: conv_fn(backend, conv)(*ts).square().sum()

    dims = tuple(in_dims)
    out = vmap(conv_fn("native", conv), in_dims=dims)(*tensors)
    check(f"vmap over {which} [{name}]", out, vmap(conv_fn("reference", conv), in_dims=dims)(*tensors))
    out = vmap(grad(loss("native"), argnums=live), in_dims=dims)(*tensors)
    check(f"vmap(grad) over {which} [{name}]", out, vmap(grad(loss("reference"), argnums=live), in_dims=dims)(*tensors))


def test_vmap_along_a_later_dimension_and_out_dims():
    x, w, kb, b = make_problem(N=2, C=2, O=3, H=5, W=5)
    xs = batched(x, 0).movedim(0, 2)  # (N, C, B, H, W)
    ws = batched(w, 1).movedim(0, 3)
    f = conv_fn("native", dict(padding=1))
    out = vmap(f, in_dims=(2, 3, None, None), out_dims=1)(xs, ws, kb, b)
    ref = vmap(conv_fn("reference", dict(padding=1)), in_dims=(2, 3, None, None), out_dims=1)(xs, ws, kb, b)
    check("vmap along dim 2/3, out_dims=1", out, ref)


def test_nested_vmap():
    x, w, kb, b = make_problem(N=1, C=2, O=2, H=4, W=4)
    xs = batched(batched(x, 0), 1)  # (B, B, N, C, H, W)
    ws = batched(w, 2)

    def nested(backend):
        inner = vmap(conv_fn(backend, dict(padding=1)), in_dims=(0, None, None, None))
        return vmap(inner, in_dims=(0, 0, None, None))(xs, ws, kb, b)

    check("vmap(vmap) input x weights", nested("native"), nested("reference"))


class _CountOps:
    """Counts the fused operator calls; fails on any reference call."""

    def __init__(self, monkeypatch):
        self.forward = self.backward = 0
        ops = _backends.fused_ops("native")

        def forward(*args):
            self.forward += 1
            return ops.forward(*args)

        def backward(*args):
            self.backward += 1
            return ops.backward(*args)

        monkeypatch.setitem(_backends._FUSED, "native", lambda: _backends.FusedOps(forward, backward))

        def no_reference(*args, **kwargs):
            raise AssertionError("the reference ran")

        monkeypatch.setattr(_func, "adaptive_conv2d_reference", no_reference)


class SmallNet(nn.Module):
    def __init__(self, backend):
        super().__init__()
        self.conv = adaptive_conv_ext.AdaptiveConv2d(
            2, 4, 3, padding=1, stride=(1, 2), groups=2, backend=backend, dtype=torch.float64
        )
        self.linear = nn.Linear(4 * 6 * 3, 3, dtype=torch.float64)

    def forward(self, x):
        return self.linear(torch.relu(self.conv(x)).flatten(1))


def _per_sample_setup():
    torch.manual_seed(0)
    model = SmallNet("native")
    x = torch.randn(5, 2, 6, 5, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 1, 0])
    params = {k: v.detach() for k, v in model.named_parameters()}
    return model, x, target, params


def _sample_loss(model, params, x, target):
    logits = functional_call(model, params, (x.unsqueeze(0),))
    return nn.functional.cross_entropy(logits, target.unsqueeze(0))


def test_per_sample_gradients_equal_a_loop_over_samples(monkeypatch):
    """opacus-style: vmap(grad(functional_call)) over the samples; one fused forward and
    one fused backward for the whole batch, never the reference, never a loop."""
    model, x, target, params = _per_sample_setup()
    loop = [
        torch.autograd.grad(
            _sample_loss(model, dict(model.named_parameters()), x[i], target[i]), list(model.parameters())
        )
        for i in range(len(x))
    ]
    counter = _CountOps(monkeypatch)
    per_sample = vmap(grad(lambda p, xi, ti: _sample_loss(model, p, xi, ti)), in_dims=(None, 0, 0))(params, x, target)
    assert (counter.forward, counter.backward) == (1, 1)
    for j, name in enumerate(params):
        check(f"per-sample grads vs loop: {name}", per_sample[name], torch.stack([g[j] for g in loop]))
    # ... and against the reference backend
    reference_model = SmallNet("reference")
    monkeypatch.undo()
    ref = vmap(grad(lambda p, xi, ti: _sample_loss(reference_model, p, xi, ti)), in_dims=(None, 0, 0))(
        params, x, target
    )
    check("per-sample grads vs reference (module)", per_sample, ref)


def test_vmapped_backward_never_sums_over_the_vmapped_dimension():
    # Shared weights, per-sample inputs: each weight gradient is that sample's alone.
    x, w, kb, b = make_problem(N=1, C=2, O=2, H=4, W=4)
    xs = batched(x, 0)
    f = conv_fn("native", dict(padding=1))
    per_sample = vmap(grad(lambda w, xi: f(xi, w, kb, b).sum()), in_dims=(None, 0))(w, xs)
    assert per_sample.shape == (B,) + w.shape
    single = [grad(lambda w: f(xs[i], w, kb, b).sum())(w) for i in range(B)]
    check("vmap(grad) weight vs per-sample grad", per_sample, torch.stack(single))


def _tangents(tensors, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return tuple(None if t is None else torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in tensors)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_jvp_matches_reference_and_finite_differences(name):
    problem, conv = GEOMETRIES[name]
    tensors = make_problem(**problem)
    tangents = _tangents(tensors)
    native, reference = conv_fn("native", conv), conv_fn("reference", conv)
    for subset in ((0, 1, 2, 3), (0,), (1,), (2,), (3,), (1, 2)):
        live = [i for i in subset if tensors[i] is not None]
        if not live:
            continue

        def restrict(f):
            def g(*values):
                args = list(tensors)
                for i, v in zip(live, values):
                    args[i] = v
                return f(*args)

            return g

        primals, dirs = tuple(tensors[i] for i in live), tuple(tangents[i] for i in live)
        out = jvp(restrict(native), primals, dirs)
        check(f"jvp wrt {'+'.join(NAMES[i] for i in live)} [{name}]", out, jvp(restrict(reference), primals, dirs))
        if subset == (0, 1, 2, 3):
            h = 1e-6
            plus = restrict(native)(*(p + h * t for p, t in zip(primals, dirs)))
            minus = restrict(native)(*(p - h * t for p, t in zip(primals, dirs)))
            fd = (plus - minus) / (2 * h)
            err = (out[1] - fd).abs().max().item()
            _ERRORS[f"jvp vs central difference (h=1e-6) [{name}]"] = err
            assert err < 1e-6


def test_forward_ad_dual_tensors():
    x, w, kb, b = make_problem(N=2, C=2, O=3, H=5, W=5)
    tx, tw, tkb, tb = _tangents((x, w, kb, b))
    conv = dict(stride=(2, 1), padding=1)
    with fwAD.dual_level():
        duals = [fwAD.make_dual(p, t) for p, t in zip((x, w, kb, b), (tx, tw, tkb, tb))]
        y = conv_fn("native", conv)(*duals)
        primal, tangent = fwAD.unpack_dual(y)
        # forward over reverse in plain autograd: the backward's tangent (an input-gradient
        # penalty's directional derivative)
        xg = fwAD.make_dual(x.clone().requires_grad_(), tx)
        (gx,) = torch.autograd.grad(conv_fn("native", conv)(xg, w, kb, b).square().sum(), xg, create_graph=True)
        gx_tangent = fwAD.unpack_dual(gx).tangent
    ref = jvp(conv_fn("reference", conv), (x, w, kb, b), (tx, tw, tkb, tb))
    check("forward_ad dual tensors", (primal, tangent), ref)

    def ref_grad(x):
        return grad(lambda x: conv_fn("reference", conv)(x, w, kb, b).square().sum())(x)

    check("forward_ad over autograd.grad (input grad)", gx_tangent, jvp(ref_grad, (x,), (tx,))[1])


@pytest.mark.parametrize("name", GEOMETRIES)
def test_jacrev_jacfwd_match_reference(name):
    problem, conv = GEOMETRIES[name]
    problem = dict(problem, N=1)
    tensors = make_problem(**problem)
    native, reference = conv_fn("native", conv), conv_fn("reference", conv)
    live = tuple(i for i, t in enumerate(tensors) if t is not None)
    for label, transform in (("jacrev", jacrev), ("jacfwd", jacfwd)):
        out = transform(native, argnums=live)(*tensors)
        check(f"{label} [{name}]", out, transform(reference, argnums=live)(*tensors))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_hessian_matches_reference(name):
    problem, conv = GEOMETRIES[name]
    x, w, kb, b = make_problem(**dict(problem, N=1))

    def loss(backend):
        return lambda x, w, kb: conv_fn(backend, conv)(x, w, kb, b).tanh().sum()

    argnums = (0, 1) if kb is None else (0, 1, 2)
    out = hessian(loss("native"), argnums=argnums)(x, w, kb)
    check(f"hessian [{name}]", out, hessian(loss("reference"), argnums=argnums)(x, w, kb))


def test_module_with_functional_call_jvp_and_jacrev():
    torch.manual_seed(1)
    layer = adaptive_conv_ext.AdaptiveConv2d(2, 2, 3, padding=1, dtype=torch.float64)
    reference = adaptive_conv_ext.AdaptiveConv2d(2, 2, 3, padding=1, dtype=torch.float64, backend="reference")
    params = {k: v.detach() for k, v in layer.named_parameters()}
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    tangents = {k: torch.randn_like(v) for k, v in params.items()}

    def transforms(model):
        def f(p):
            return functional_call(model, p, (x,))

        return jvp(f, (params,), (tangents,)), jacrev(f)(params)

    check("module functional_call: jvp, jacrev", transforms(layer), transforms(reference))
