"""Geometry in every use: nn.Conv2d-style padding ("same", "valid", padding_mode),
int64 overflow, empty sizes, meta tensors and what available_backends reports."""

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

import adaptive_conv_ext
from adaptive_conv_ext import AdaptiveConv2d, adaptive_conv2d
from adaptive_conv_ext.reference import adaptive_conv2d_reference
from conftest import make_problem, rel_err

MODES = ("zeros", "reflect", "replicate", "circular")


def sides(padding, kernel, dilation):
    """F.pad's (left, right, top, bottom) for what nn.Conv2d does with `padding`."""
    (kH, kW), (dH, dW) = kernel, dilation
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        tH, tW = dH * (kH - 1), dW * (kW - 1)
        return (tW // 2, tW - tW // 2, tH // 2, tH - tH // 2)
    pH, pW = (padding, padding) if isinstance(padding, int) else padding
    return (pW, pW, pH, pH)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", ["same", "valid", 1, (2, 1)])
@pytest.mark.parametrize("dilation", [(1, 1), (2, 1)])
def test_padding_matches_padding_first(backend, mode, padding, dilation):
    # Kernel (3, 2): "same" needs uneven padding along the width.
    x, w, kb, b = make_problem(N=2, C=3, O=4, H=7, W=6, k=(3, 2))
    y = adaptive_conv2d(x, w, kb, b, padding=padding, dilation=dilation, padding_mode=mode, backend=backend)
    padded = F.pad(x, sides(padding, (3, 2), dilation), mode="constant" if mode == "zeros" else mode)
    ref = adaptive_conv2d_reference(padded, w, kb, b, dilation=dilation)
    assert y.shape == ref.shape
    assert rel_err(y, ref) < 1e-12


@pytest.mark.parametrize("mode", MODES)
def test_padding_modes_gradients_match_reference(mode):
    def grads(backend):
        leaves = [t.clone().requires_grad_() for t in make_problem(N=1, C=2, O=2, H=5, W=6, k=(3, 3))]
        y = adaptive_conv2d(*leaves, padding="same", padding_mode=mode, backend=backend)
        return torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y).double()).sum(), leaves)

    for o, r in zip(grads("native"), grads("reference")):
        assert rel_err(o, r) < 1e-12


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (4, 1), (2, 3), (5, 2), ((3, 4), (1, 2))])
def test_same_gives_nn_conv2d_shapes(kernel, dilation):
    x = torch.randn(2, 2, 9, 8)
    conv = torch.nn.Conv2d(2, 3, kernel, padding="same", dilation=dilation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conv2d warns about its own padded copy
        expected = conv(x).shape
    layer = AdaptiveConv2d(2, 3, kernel, padding="same", dilation=dilation)
    assert layer(x).shape == expected


def test_module_padding_mode_matches_functional_and_repr():
    layer = AdaptiveConv2d(2, 3, 3, padding=1, padding_mode="circular").double()
    x = torch.randn(1, 2, 6, 5, dtype=torch.float64)
    y = layer(x)
    ref = adaptive_conv2d_reference(F.pad(x, (1, 1, 1, 1), mode="circular"), layer.weight, layer.kernel_bias, layer.bias)
    assert rel_err(y, ref) < 1e-12
    assert "padding_mode='circular'" in repr(layer)
    assert "padding='same'" in repr(AdaptiveConv2d(2, 3, 3, padding="same"))


@pytest.mark.parametrize(
    "kwargs, match, at_construction",
    [
        (dict(padding="same", stride=2), "stride 1", True),
        (dict(padding="full"), "'same', 'valid'", True),
        (dict(padding_mode="zero"), "padding_mode", True),
        # These depend on the input size, so the layer can only tell at its first call.
        (dict(padding=7, padding_mode="reflect"), "reflect", False),
        (dict(padding=9, padding_mode="circular"), "circular", False),
    ],
)
def test_bad_padding_raises(kwargs, match, at_construction):
    x, w, kb, b = make_problem(H=7, W=8)
    with pytest.raises(ValueError, match=match):
        adaptive_conv2d(x, w, kb, b, **kwargs)
    with pytest.raises(ValueError, match=match):
        AdaptiveConv2d(4, 6, 3, **kwargs).double()(x) if not at_construction else AdaptiveConv2d(4, 6, 3, **kwargs)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(padding=2**62), "int64"),
        (dict(padding=(0, 2**63)), "int64"),
        (dict(dilation=2**62), "int64"),
        (dict(stride=2**64), "int64"),
    ],
)
def test_overflowing_geometry_is_a_value_error(backend, kwargs, match):
    x, w, kb, b = make_problem()
    with pytest.raises(ValueError, match=match):
        adaptive_conv2d(x, w, kb, b, **kwargs, backend=backend)


@pytest.mark.parametrize("padding, dilation", [((2**62, 2**62), (1, 1)), ((0, 0), (2**62, 1))])
def test_direct_op_call_checks_overflow(padding, dilation):
    x, w, _, _ = make_problem()
    with pytest.raises(ValueError, match="int64"):
        torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, None, None, [1, 1], list(padding), list(dilation), 1)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("shape", [(1, 4, 5, 0), (1, 4, 0, 5), (2, 4, 0, 0)])
def test_empty_height_or_width_raises_like_conv2d(backend, shape):
    _, w, kb, b = make_problem()
    x = torch.randn(shape, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        F.conv2d(x, w[:, :, :, :, 0, 0], padding=1)
    with pytest.raises(ValueError, match="height and width must be non-zero"):
        adaptive_conv2d(x, w, kb, b, padding=1, backend=backend)
    with pytest.raises(ValueError, match="non-zero"):
        torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, kb, b, [1, 1], [1, 1], [1, 1], 1)


BACKENDS_ON_META = ["auto", "native", "reference"] + (["triton"] if adaptive_conv_ext.available_backends("meta")["triton"] is None else [])


@pytest.mark.parametrize("backend", BACKENDS_ON_META)
def test_meta_tensors_use_the_fake_kernels(backend):
    x, w, kb, b = (t.to("meta") for t in make_problem(dtype=torch.float32))
    w.requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        y = adaptive_conv2d(x, w, kb, b, stride=(2, 1), padding=1, backend=backend)
        y.sum().backward()
    real = adaptive_conv2d(*make_problem(dtype=torch.float32), stride=(2, 1), padding=1, backend="native")
    assert y.device.type == "meta" and y.shape == real.shape and y.dtype == real.dtype
    assert w.grad.shape == w.shape and w.grad.device.type == "meta"


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_meta_shape_errors_equal_real_ones(backend):
    for kwargs in (dict(padding=2**62), dict(groups=3), dict(padding="same", stride=2)):
        errors = []
        for device in ("cpu", "meta"):
            x, w, kb, b = (t.to(device) for t in make_problem())
            with pytest.raises((ValueError, TypeError)) as info:
                adaptive_conv2d(x, w, kb, b, **kwargs, backend=backend)
            errors.append((info.type, str(info.value)))
        assert errors[0] == errors[1]


def test_fake_tensor_mode_traces_the_native_op():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, w = torch.empty(2, 4, 9, 8), torch.empty(6, 4, 3, 3, 3, 3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = adaptive_conv2d(x, w, padding=1)
    assert y.shape == (2, 6, 9, 8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without a GPU")
def test_available_backends_without_a_gpu_says_why():
    report = adaptive_conv_ext.available_backends("cuda")
    expected = "torch built without CUDA" if torch.version.cuda is None else "no CUDA device"
    for name in ("native", "triton", "reference"):
        assert report[name] is not None and expected in report[name], (name, report[name])
    assert adaptive_conv_ext.available_backends("cpu")["native"] is None
    assert adaptive_conv_ext.available_backends("cpu")["reference"] is None


def test_docs_spec_is_the_shared_spec():
    """docs/SPEC.md is a copy of the project's upstream contract: where that is at hand
    (ADAPTIVE_CONV_UPSTREAM_SPEC, or the project's workspace beside this checkout), equal."""
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("ADAPTIVE_CONV_UPSTREAM_SPEC") or os.path.join(here, "..", "..", "shared", "SPEC.md")
    if not os.path.exists(shared):
        pytest.skip("docs/SPEC.md has no upstream copy to compare with here (set ADAPTIVE_CONV_UPSTREAM_SPEC)")
    with open(shared) as a, open(os.path.join(here, "..", "docs", "SPEC.md")) as b:
        assert a.read() == b.read(), "docs/SPEC.md is out of date: copy ../shared/SPEC.md over it"
