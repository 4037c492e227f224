"""Autograd on the native operators themselves (issue 24 item 4, issue 29).

torch.ops.adaptive_conv_ext.adaptive_conv2d_forward/backward called directly, and the
graphs of exported programs, get gradients (first and second order) and forward-mode
tangents (torch.func.jvp, torch.autograd.forward_ad) equal to the reference's; only the
gradients asked for are computed; opcheck passes with inputs that require grad;
torch.func transforms compose over direct calls; torch.compile (fullgraph) and
torch.export keep working. float64 on CPU.
"""

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import grad, jacfwd, jacrev, jvp, vmap
from torch.utils._python_dispatch import TorchDispatchMode

import adaptive_conv_ext
from adaptive_conv_ext.reference import adaptive_conv2d_reference
from conftest import make_problem

pytestmark = pytest.mark.skipif(
    adaptive_conv_ext.available_backends("cpu")["native"] is not None, reason="needs the compiled CPU operators"
)

OPS = torch.ops.adaptive_conv_ext
# (problem, (stride, padding, dilation, groups)): small, since gradcheck perturbs every element.
GEOMETRIES = {
    "stride-pad-rect": (dict(N=2, C=2, O=3, H=5, W=6, k=(2, 3)), ([1, 2], [1, 1], [1, 1], 1)),
    "groups-dilation": (dict(N=1, C=4, O=4, H=6, W=5, groups=2), ([1, 1], [1, 0], [2, 1], 2)),
    "no-biases": (dict(N=2, C=2, O=2, H=4, W=4, kernel_bias=False, bias=False), ([2, 1], [1, 1], [1, 1], 1)),
}


def _leaves(problem):
    return [None if t is None else t.clone().requires_grad_() for t in make_problem(**problem)]


def _reference(x, w, kb, b, conv):
    stride, padding, dilation, groups = conv
    return adaptive_conv2d_reference(x, w, kb, b, stride, padding, dilation, groups)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_opcheck_with_requires_grad(name):
    problem, conv = GEOMETRIES[name]
    x, w, kb, b = _leaves(problem)
    torch.library.opcheck(OPS.adaptive_conv2d_forward.default, (x, w, kb, b, *conv))
    grad_output = torch.randn_like(_reference(x, w, kb, b, conv)).requires_grad_()
    for mask in ([True, True], [True, False], [False, True]):
        torch.library.opcheck(OPS.adaptive_conv2d_backward.default, (grad_output, x, w, kb, *conv, mask))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_direct_op_gradients_match_reference(name):
    problem, conv = GEOMETRIES[name]
    leaves = _leaves(problem)
    live = [t for t in leaves if t is not None]
    y = OPS.adaptive_conv2d_forward(*leaves, *conv)
    ref = _reference(*leaves, conv)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(y.square().sum(), live)
    ref_grads = torch.autograd.grad(ref.square().sum(), live)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


@pytest.mark.parametrize("name", GEOMETRIES)
def test_direct_op_gradcheck_and_gradgradcheck(name):
    problem, conv = GEOMETRIES[name]
    leaves = _leaves(problem)
    where = [i for i, t in enumerate(leaves) if t is not None]

    def f(*ts):
        args = list(leaves)
        for i, t in zip(where, ts):
            args[i] = t
        return OPS.adaptive_conv2d_forward(*args, *conv)

    live = [leaves[i] for i in where]
    assert torch.autograd.gradcheck(f, live, eps=1e-6, atol=1e-7, rtol=1e-5)
    assert torch.autograd.gradgradcheck(f, live, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kernel_bias", [True, False])
def test_backward_op_is_differentiable(kernel_bias):
    # Its gradient outputs (d beta included, which the operator returns even without a
    # kernel_bias) are differentiable functions of grad_output, input, weight, kernel_bias.
    x, w, kb, _ = _leaves(dict(N=1, C=2, O=2, H=4, W=4, kernel_bias=kernel_bias))
    conv = ([1, 1], [1, 1], [1, 1], 1)
    grad_output = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    live = [t for t in (grad_output, x, w, kb) if t is not None]

    def f(*ts):
        go, xx, ww, *rest = ts
        return OPS.adaptive_conv2d_backward(go, xx, ww, rest[0] if rest else None, *conv, [True, True])

    assert torch.autograd.gradcheck(f, live, eps=1e-6, atol=1e-7, rtol=1e-5)


class _RecordMasks(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is OPS.adaptive_conv2d_backward.default:
            self.masks.append(list(args[8]))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "wanted, mask", [((0,), [True, False]), ((1,), [False, True]), ((2,), [False, True]), ((3,), None)]
)
def test_direct_op_computes_only_the_gradients_asked_for(wanted, mask):
    # "Asked for": the inputs that require grad (ctx.needs_input_grad).
    leaves = [t.requires_grad_(i in wanted) for i, t in enumerate(_leaves(dict(N=2, C=2, O=3, H=5, W=5)))]
    y = OPS.adaptive_conv2d_forward(*leaves, [1, 1], [1, 1], [1, 1], 1)
    with _RecordMasks() as record:
        grads = torch.autograd.grad(y.square().sum(), [leaves[i] for i in wanted])
    assert record.masks == ([] if mask is None else [mask])
    ref = _reference(*leaves, ([1, 1], [1, 1], [1, 1], 1))
    ref_grads = torch.autograd.grad(ref.square().sum(), [leaves[i] for i in wanted])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


def test_vmap_of_direct_op_calls():
    x, w, kb, b = make_problem(N=3, C=2, O=2, H=5, W=5)
    conv = ([1, 1], [1, 1], [1, 1], 1)
    per_sample = torch.vmap(lambda xi: OPS.adaptive_conv2d_forward(xi[None], w, kb, b, *conv)[0])(x)
    torch.testing.assert_close(per_sample, _reference(x, w, kb, b, conv), rtol=0, atol=1e-12)
    ws = torch.stack([w, 2 * w, -w])
    per_weight = torch.vmap(lambda wi: OPS.adaptive_conv2d_forward(x, wi, kb, b, *conv))(ws)
    expected = torch.stack([_reference(x, wi, kb, b, conv) for wi in ws])
    torch.testing.assert_close(per_weight, expected, rtol=0, atol=1e-12)
    grad_output = torch.randn(3, 3, 2, 5, 5, dtype=torch.float64)
    gx, gw, gkb = torch.vmap(
        lambda go: OPS.adaptive_conv2d_backward(go, x, w, kb, *conv, [True, True])
    )(grad_output)
    for i in range(3):
        ref = OPS.adaptive_conv2d_backward(grad_output[i], x, w, kb, *conv, [True, True])
        for batched, single in zip((gx, gw, gkb), ref):
            torch.testing.assert_close(batched[i], single, rtol=0, atol=1e-12)


def test_exported_program_gets_gradients():
    layer = adaptive_conv_ext.AdaptiveConv2d(2, 4, 3, padding=1, stride=(1, 2), groups=2, dtype=torch.float64)
    x = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    program = torch.export.export(layer, (x,))
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert OPS.adaptive_conv2d_forward.default in targets
    exported = program.module()
    xe = x.clone().requires_grad_()
    exported(xe).square().sum().backward()
    xr = x.clone().requires_grad_()
    ref = adaptive_conv2d_reference(xr, layer.weight, layer.kernel_bias, layer.bias, (1, 2), 1, 1, 2)
    ref_grads = torch.autograd.grad(ref.square().sum(), (xr, layer.weight, layer.kernel_bias, layer.bias))
    params = dict(exported.named_parameters())
    got = (xe.grad, params["weight"].grad, params["kernel_bias"].grad, params["bias"].grad)
    for g, r in zip(got, ref_grads):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


# ---- forward mode over direct calls (issue 29) ----
# torch.library.register_autograd left these silently wrong: torch.func.jvp gave a zero
# tangent and forward_ad none (max error 15.6 on "stride-pad-rect" below).


def _tangents(tensors, seed=7):
    gen = torch.Generator().manual_seed(seed)
    return tuple(None if t is None else torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in tensors)


def _fill(tensors, values):
    """tensors with each one that is not None replaced by the next of values."""
    values = iter(values)
    return [None if t is None else next(values) for t in tensors]


def _max_error(out, ref):
    return max((o - r).abs().max().item() for o, r in zip(out, ref))


@pytest.mark.parametrize("name", GEOMETRIES)
def test_direct_forward_op_jvp_and_dual_tensors(name):
    problem, conv = GEOMETRIES[name]
    tensors = make_problem(**problem)
    primals = tuple(t for t in tensors if t is not None)
    tangents = tuple(t for t in _tangents(tensors) if t is not None)

    def call(f):  # f of the tensors that are not None
        return lambda *values: f(*_fill(tensors, values))

    op = call(lambda *args: OPS.adaptive_conv2d_forward(*args, *conv))
    expected = jvp(call(lambda *args: _reference(*args, conv)), primals, tangents)
    assert expected[1].abs().max() > 1  # a tangent that a dropped one cannot match
    assert _max_error(jvp(op, primals, tangents), expected) < 1e-11
    with fwAD.dual_level():
        y = op(*(fwAD.make_dual(p, t) for p, t in zip(primals, tangents)))
        primal, tangent = fwAD.unpack_dual(y)
    assert tangent is not None
    assert _max_error((primal, tangent), expected) < 1e-11
    h = 1e-6
    plus = op(*(p + h * t for p, t in zip(primals, tangents)))
    minus = op(*(p - h * t for p, t in zip(primals, tangents)))
    assert _max_error((tangent,), ((plus - minus) / (2 * h),)) < 1e-6


@pytest.mark.parametrize("mask", [[True, True], [True, False], [False, True]])
@pytest.mark.parametrize("kernel_bias", [True, False])
def test_direct_backward_op_jvp_and_dual_tensors(mask, kernel_bias):
    x, w, kb, _ = make_problem(N=2, C=2, O=3, H=5, W=5, kernel_bias=kernel_bias)
    conv = ([1, 1], [1, 1], [1, 1], 1)
    grad_output = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    # d beta is returned without a kernel_bias too: the reference's at beta = 0.
    kb_value = torch.zeros(w.shape[:4], dtype=w.dtype) if kb is None else kb
    primals = (grad_output, x, w, kb_value)
    tangents = _tangents(primals)
    if kb is None:  # beta is fixed at 0
        tangents = tangents[:3] + (torch.zeros_like(kb_value),)

    def reference(go, xx, ww, kk):
        vjp = torch.func.vjp(lambda a, b, c: adaptive_conv2d_reference(a, b, c, None, *conv), xx, ww, kk)[1]
        return vjp(go)

    def op(go, xx, ww, kk):
        return OPS.adaptive_conv2d_backward(go, xx, ww, kk if kb is not None else None, *conv, mask)

    live = 4 if kb is not None else 3
    expected = jvp(reference, primals, tangents)[1]
    computed = (mask[0], mask[1], mask[1])
    out = jvp(lambda *p: op(*p, *primals[live:]), primals[:live], tangents[:live])[1]
    with fwAD.dual_level():
        duals = [fwAD.make_dual(p, t) for p, t in zip(primals[:live], tangents[:live])]
        dual_out = [fwAD.unpack_dual(o).tangent for o in op(*duals, *primals[live:])]
    for got, dual, ref, c in zip(out, dual_out, expected, computed):
        if c:
            assert ref.abs().max() > 0.1
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-11)
            torch.testing.assert_close(dual, ref, rtol=0, atol=1e-11)
        else:  # not computed: an empty tensor, with an empty tangent
            assert got.shape == dual.shape == (0,)


def test_torch_func_transforms_compose_over_direct_calls():
    x, w, kb, b = make_problem(N=2, C=2, O=3, H=5, W=6, k=(2, 3))
    conv = ([1, 2], [1, 1], [1, 1], 1)
    tx = _tangents((x,))[0]

    def cases(f):
        return {
            "grad": grad(lambda x, w: f(x, w, kb, b).square().sum(), argnums=(0, 1))(x, w),
            "vmap(jvp)": vmap(lambda xi, ti: jvp(lambda x: f(x[None], w, kb, b), (xi,), (ti,))[1])(x, tx),
            "jvp(vmap)": jvp(lambda xs: vmap(lambda xi: f(xi[None], w, kb, b))(xs), (x,), (tx,))[1],
            "jacfwd": jacfwd(f, argnums=(0, 1, 2, 3))(x[:1], w, kb, b),
            "jacrev": jacrev(f, argnums=(0, 1, 2, 3))(x[:1], w, kb, b),
            "jvp(grad)": jvp(grad(lambda x: f(x, w, kb, b).square().sum()), (x,), (tx,))[1],
        }

    got = cases(lambda *args: OPS.adaptive_conv2d_forward(*args, *conv))
    expected = cases(lambda *args: _reference(*args, conv))
    for key in got:
        out, ref = torch.utils._pytree.tree_leaves(got[key]), torch.utils._pytree.tree_leaves(expected[key])
        assert _max_error(out, ref) < 1e-11, key


def test_compiled_direct_op_fullgraph_gradients():
    # aot_eager: AOTAutograd traces the operator's Autograd kernel, as Inductor's does.
    leaves = _leaves(dict(N=2, C=2, O=3, H=5, W=6, k=(2, 3)))
    conv = ([1, 2], [1, 1], [1, 1], 1)

    def f(*args):
        return OPS.adaptive_conv2d_forward(*args, *conv).tanh()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    y = compiled(*leaves)
    torch.testing.assert_close(y, f(*leaves), rtol=0, atol=0)
    grads = torch.autograd.grad(y.square().sum(), leaves)
    ref = _reference(*leaves, conv).tanh()
    ref_grads = torch.autograd.grad(ref.square().sum(), leaves)
    assert _max_error(grads, ref_grads) < 1e-11


def test_exported_direct_op_forward_mode():
    conv = ([1, 2], [1, 1], [1, 1], 1)

    class Direct(torch.nn.Module):
        def forward(self, *args):
            return OPS.adaptive_conv2d_forward(*args, *conv)

    tensors = make_problem(N=2, C=2, O=3, H=5, W=6, k=(2, 3))
    program = torch.export.export(Direct(), tensors)
    targets = [n.target for n in program.graph.nodes if n.op == "call_function"]
    assert targets == [OPS.adaptive_conv2d_forward.default]
    tangents = _tangents(tensors)
    out = jvp(program.module(), tensors, tangents)
    assert _max_error(out, jvp(lambda *args: _reference(*args, conv), tensors, tangents)) < 1e-11
