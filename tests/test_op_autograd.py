"""Autograd on the native operators themselves (issue 24 item 4).

torch.ops.adaptive_conv_ext.adaptive_conv2d_forward/backward called directly, and the
graphs of exported programs, get gradients (first and second order) equal to the
reference's; only the gradients asked for are computed; opcheck passes with inputs
that require grad. float64 on CPU.
"""

import pytest
import torch
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
