"""Double backward (SPEC section 1: "the backward is itself differentiable").

Gradient penalties (WGAN-GP, R1, input-gradient regularisers) differentiate the
input gradient again. Every backend must give the reference's second-order
gradients, or raise; never silently drop a path. float64 gradgradcheck for native and
the reference; the Triton backend (float32 only) runs under the interpreter in a
subprocess and is compared with the float64 reference.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from adaptive_conv_ext import adaptive_conv2d
from conftest import make_problem, rel_err

# (problem kwargs, conv kwargs): small, since gradgradcheck perturbs every element.
GEOMETRIES = {
    "stride-pad-rect": (dict(N=1, C=2, O=2, H=4, W=5, k=(2, 3)), dict(stride=(1, 2), padding=1)),
    "groups-dilation-no-kernel-bias": (
        dict(N=2, C=4, O=2, H=5, W=4, k=(2, 2), groups=2, kernel_bias=False),
        dict(dilation=(2, 1), padding=(1, 0), groups=2),
    ),
}


def _leaves(problem, dtype=torch.float64):
    return [None if t is None else t.to(dtype).clone().requires_grad_() for t in make_problem(**problem)]


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", GEOMETRIES)
def test_gradgradcheck_float64(backend, name):
    problem, conv = GEOMETRIES[name]
    leaves = _leaves(problem)
    live = [t for t in leaves if t is not None]
    where = [i for i, t in enumerate(leaves) if t is not None]

    def f(*ts):
        args = list(leaves)
        for i, t in zip(where, ts):
            args[i] = t
        return adaptive_conv2d(*args, **conv, backend=backend)

    assert torch.autograd.gradgradcheck(f, live, eps=1e-6, atol=1e-7, rtol=1e-5)


def penalty_gradients(backend, outer, dtype=torch.float64, problem=None, conv=None):
    """A gradient-penalty step: g = d outer(y) / dx with create_graph, loss = |g|^2 + y.mean();
    returns d loss / d (weight, kernel_bias, bias, input) as float64."""
    problem = problem or dict(N=2, C=3, O=4, H=6, W=5)
    conv = conv or dict(padding=1, stride=(2, 1))
    x, w, kb, b = _leaves(problem, dtype)
    y = adaptive_conv2d(x, w, kb, b, **conv, backend=backend)
    first = y.sum() if outer == "sum" else y.square().sum()
    (g,) = torch.autograd.grad(first, x, create_graph=True)
    loss = g.square().sum() + y.mean()
    return [t.double() for t in torch.autograd.grad(loss, (w, kb, b, x))]


@pytest.mark.parametrize("outer", ["sum", "square"])
def test_gradient_penalty_native_matches_reference(outer):
    ref = penalty_gradients("reference", outer)
    out = penalty_gradients("native", outer)
    for name, o, r in zip(("weight", "kernel_bias", "bias", "input"), out, ref):
        assert rel_err(o, r) < 1e-10, (name, rel_err(o, r))


def test_third_order_matches_reference():
    def third(backend):
        x, w, kb, b = _leaves(dict(N=1, C=2, O=2, H=4, W=4))
        y = adaptive_conv2d(x, w, kb, b, padding=1, backend=backend)
        (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
        (h,) = torch.autograd.grad(g.square().sum(), w, create_graph=True)
        return torch.autograd.grad(h.square().sum(), (x, w, kb))

    for o, r in zip(third("native"), third("reference")):
        assert rel_err(o, r) < 1e-10


def test_triton_gradient_penalty_in_interpreter():
    pytest.importorskip("triton")
    tests = os.path.dirname(os.path.abspath(__file__))
    # The worker imports the package of this checkout, whatever an editable install points at.
    path = os.pathsep.join([os.path.dirname(tests), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, __file__, "--triton-worker"], env=env, capture_output=True, text=True,
        cwd=tests, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    # float32 throughout (Triton has no float64): SPEC's float32 tolerance.
    for key, err in errors.items():
        assert err < 1e-6, (key, err)


def _triton_worker():
    import adaptive_conv_ext

    assert adaptive_conv_ext.available_backends("cpu")["triton"] is None
    problem, conv = dict(N=2, C=2, O=3, H=5, W=5), dict(padding=1)
    errors = {}
    for outer in ("sum", "square"):
        ref = penalty_gradients("reference", outer, torch.float64, problem, conv)
        out = penalty_gradients("triton", outer, torch.float32, problem, conv)
        for name, o, r in zip(("weight", "kernel_bias", "bias", "input"), out, ref):
            errors[f"{outer}/{name}"] = rel_err(o, r)
    print(json.dumps(errors))


if __name__ == "__main__" and sys.argv[1:] == ["--triton-worker"]:
    _triton_worker()
