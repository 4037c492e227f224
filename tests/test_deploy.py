"""Deploying a model with adaptive layers (issue 15): torch.export keeps the fused op,
torch.onnx.export (dynamo) turns it into standard ONNX operators that onnxruntime runs,
and an AOTInductor package calls the native kernel. CPU only."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import adaptive_conv_ext as ace
from adaptive_conv_ext import _backends
from adaptive_conv_ext._onnx import adaptive_conv2d_standard_ops
from adaptive_conv_ext.reference import adaptive_conv2d_reference

from conftest import TOLERANCE, make_problem, rel_err

pytestmark = pytest.mark.skipif(
    _backends.native_unavailable_reason(torch.device("cpu")) is not None,
    reason="the native CPU extension is not built",
)

FUSED_OP = "adaptive_conv_ext.adaptive_conv2d_forward.default"
ONNX_TOL = 1e-4  # issue 15: float32 onnxruntime against eager, relative
# What the registered formulation may become in ONNX (plus the model's own ReLU).
STANDARD_ONNX_OPS = {"Conv", "Tanh", "Mul", "ReduceSum", "Reshape", "Add", "Transpose", "Relu"}


class TwoLayers(nn.Module):
    """A groups=1 adaptive layer and a depthwise one, with geometry from the case."""

    def __init__(self, case, backend="auto"):
        super().__init__()
        first, second = case
        self.a = ace.AdaptiveConv2d(3, 8, backend=backend, **first)
        self.b = ace.AdaptiveConv2d(8, 8, groups=8, backend=backend, **second)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


# (first layer, second layer) keyword arguments: plain, strided depthwise, dilated and
# asymmetric, no biases.
CASES = {
    "pad1": (dict(kernel_size=3, padding=1), dict(kernel_size=3, padding=1)),
    "stride2-depthwise": (dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2, padding=1)),
    "dilation-asym": (
        dict(kernel_size=(3, 5), padding=(2, 1), dilation=(2, 1)),
        dict(kernel_size=3, stride=(1, 2), padding=(0, 2), dilation=(1, 2)),
    ),
    "no-biases-k5": (dict(kernel_size=5, padding=2, bias=False, kernel_bias=False), dict(kernel_size=1)),
}


def model_for(case_name, seed=0):
    torch.manual_seed(seed)
    model = TwoLayers(CASES[case_name]).eval()
    with torch.no_grad():  # generating filters large enough that tanh is not linear
        for layer in (model.a, model.b):
            layer.weight.mul_(3.0)
    return model


def batch_dim():
    return ({0: torch.export.Dim("batch", min=1, max=64)},)


def fused_op_count(graph_module):
    return sum(1 for n in graph_module.graph.nodes if n.op == "call_function" and str(n.target) == FUSED_OP)


# --- the standard-operator form ------------------------------------------------------


@pytest.mark.parametrize(
    "geometry",
    [
        dict(C=4, O=6, groups=1, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1)),
        dict(C=4, O=8, groups=2, k=(3, 5), stride=(2, 1), padding=(2, 1), dilation=(1, 2)),
        dict(C=6, O=6, groups=6, k=(3, 3), stride=(2, 2), padding=(0, 3), dilation=(2, 1)),
        dict(C=3, O=6, groups=3, k=(2, 2), stride=(1, 1), padding=(0, 0), dilation=(1, 1)),
    ],
)
@pytest.mark.parametrize("biases", [True, False])
def test_standard_op_form_matches_the_reference(geometry, biases):
    g = dict(geometry)
    conv = [g.pop(key) for key in ("stride", "padding", "dilation")]
    x, w, kb, b = make_problem(N=2, H=11, W=10, kernel_bias=biases, bias=biases, scale=2.0, **g)
    y = adaptive_conv2d_standard_ops(x, w, kb, b, *conv, g["groups"])
    ref = adaptive_conv2d_reference(x, w, kb, b, *conv, g["groups"])
    assert y.shape == ref.shape
    assert rel_err(y, ref) < TOLERANCE[torch.float64]


def test_standard_op_form_is_registered_for_the_onnx_exporter_only():
    from torch._decomp import core_aten_decompositions, decomposition_table, get_decompositions

    from adaptive_conv_ext._onnx import onnx_decomposition_table

    op = torch.ops.adaptive_conv_ext.adaptive_conv2d_forward.default
    assert onnx_decomposition_table()[op] is adaptive_conv2d_standard_ops
    # Not part of what torch.export's run_decompositions() or Inductor apply, nor in the
    # global table (Inductor's make_fallback asserts against that when CI is set).
    assert op not in core_aten_decompositions()
    assert op not in torch.export.default_decompositions()
    assert op not in decomposition_table and not get_decompositions([op])


# --- torch.export --------------------------------------------------------------------


@pytest.mark.parametrize("case_name", ["pad1", "dilation-asym"])
def test_torch_export_keeps_the_fused_op_with_a_dynamic_batch(case_name):
    model = model_for(case_name)
    program = torch.export.export(model, (torch.randn(2, 3, 12, 13),), dynamic_shapes=batch_dim())
    assert fused_op_count(program.graph_module) == 2
    targets = {str(n.target) for n in program.graph_module.graph.nodes if n.op == "call_function"}
    assert not any("tanh" in t or "im2col" in t or "convolution" in t for t in targets), targets
    assert fused_op_count(program.run_decompositions().graph_module) == 2  # core ATen keeps it too
    for n in (1, 5):
        x = torch.randn(n, 3, 12, 13)
        with torch.no_grad():
            assert rel_err(program.module()(x), model(x)) < TOLERANCE[torch.float32]


# --- ONNX ----------------------------------------------------------------------------


def onnx_session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(session, x):
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_onnx_export_runs_in_onnxruntime(case_name, tmp_path):
    pytest.importorskip("onnxscript")
    onnx = pytest.importorskip("onnx")
    model = model_for(case_name)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 12, 13),), path, dynamo=True, dynamic_shapes=batch_dim())

    graph = onnx.load(str(path)).graph
    op_types = {node.op_type for node in graph.node}
    assert op_types <= STANDARD_ONNX_OPS, op_types
    assert all(node.domain in ("", "ai.onnx") for node in graph.node)
    assert "Conv" in op_types and "Tanh" in op_types

    session = onnx_session(path)
    for n in (1, 5):  # the dynamic batch: neither is the batch the model was exported with
        x = torch.randn(n, 3, 12, 13)
        with torch.no_grad():
            expected = model(x)
        out = run_onnx(session, x)
        assert out.shape == expected.shape
        assert rel_err(out, expected) < ONNX_TOL


def test_onnx_export_without_any_extra_argument(tmp_path):
    pytest.importorskip("onnxscript")
    model = model_for("stride2-depthwise")
    x = torch.randn(3, 3, 10, 10)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), path)  # the default exporter of this torch is the dynamo one
    with torch.no_grad():
        assert rel_err(run_onnx(onnx_session(path), x), model(x)) < ONNX_TOL


def test_onnx_export_without_the_registration_says_what_to_change(monkeypatch):
    # As on a torch whose private decomposition API moved (adaptive_conv_ext/_onnx.py).
    import io

    from adaptive_conv_ext import _onnx

    monkeypatch.setattr(_onnx, "REGISTRATION_ERROR", "torch.onnx's exporter has no create_onnx_friendly_decomposition_table")
    with pytest.raises(Exception) as info:
        torch.onnx.export(model_for("pad1"), (torch.randn(1, 3, 8, 8),), io.BytesIO(), dynamo=True)
    chain, exc = [], info.value
    while exc is not None:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    text = " ".join(chain)
    assert "cannot export to ONNX with torch" in text and "use torch 2.13" in text, text


TRITON_EXPORT = textwrap.dedent(
    """
    import io, torch, adaptive_conv_ext as ace
    layer = ace.AdaptiveConv2d(2, 2, 3, padding=1, backend="triton")
    try:
        torch.onnx.export(layer, (torch.randn(1, 2, 6, 6),), io.BytesIO(), dynamo=True)
    except Exception as exc:
        text = str(exc) + "".join(str(e) for e in (exc.__cause__, exc.__context__) if e)
        print("ERROR", type(exc).__name__, text.replace(chr(10), " "))
    else:
        print("EXPORTED")
    """
)


def test_onnx_export_of_the_triton_backend_says_what_to_change():
    pytest.importorskip("triton")
    pytest.importorskip("onnxscript")
    # The Triton backend runs on CPU tensors only under the interpreter, which must be
    # switched on before triton is imported: a fresh process.
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", TRITON_EXPORT], env=env, capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(("ERROR", "EXPORTED"))][-1]
    assert line.startswith("ERROR"), line
    assert "backend='triton' cannot be exported to ONNX" in line
    assert "backend='auto'" in line


# --- AOTInductor ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """(eager model, .pt2 path): compiled once for the module (a minute or more on 2 cores)."""
    model = model_for("stride2-depthwise")
    program = torch.export.export(model, (torch.randn(2, 3, 12, 12),), dynamic_shapes=batch_dim())
    path = tmp_path_factory.mktemp("aoti") / "model.pt2"
    return model, torch._inductor.aoti_compile_and_package(program, package_path=str(path))


def test_aoti_package_calls_the_native_kernel_and_matches_eager(aoti_package):
    model, package = aoti_package
    loaded = torch._inductor.aoti_load_package(package)
    for n in (1, 4):
        x = torch.randn(n, 3, 12, 12)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = loaded(x)
        with torch.no_grad():
            assert rel_err(out, model(x)) < TOLERANCE[torch.float32]
        # The package reaches the fused kernel through the dispatcher (hence the C++
        # user's need to load the op library), not a re-derived decomposition.
        calls = [e.name for e in prof.events() if e.name == "adaptive_conv_ext::adaptive_conv2d_forward"]
        assert len(calls) == 2, sorted({e.name for e in prof.events()})


AOTI_RUN = textwrap.dedent(
    """
    import sys, torch
    package, library, data = sys.argv[1:4]
    if library:
        torch.ops.load_library(library)  # what a C++ binary does by linking or dlopen-ing it
    x, expected = torch.load(data)
    try:
        out = torch._inductor.aoti_load_package(package)(x)
    except Exception as exc:
        print("ERROR", str(exc).replace(chr(10), " "))
    else:
        print("MAX_ABS_DIFF", (out - expected).abs().max().item())
    """
)


def test_aoti_package_needs_only_the_op_library(aoti_package, tmp_path):
    # A fresh process without adaptive_conv_ext imported, as a deployment has it: the
    # package runs once the operator library is loaded, and says which op is missing if not.
    model, package = aoti_package
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        torch.save((x, model(x)), tmp_path / "data.pt")
    library = ace._native._C.__file__

    def run(lib):
        proc = subprocess.run([sys.executable, "-c", AOTI_RUN, package, lib, str(tmp_path / "data.pt")],
                              capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [ln for ln in proc.stdout.splitlines() if ln.startswith(("ERROR", "MAX_ABS_DIFF"))][-1]

    line = run(library)
    assert line.startswith("MAX_ABS_DIFF") and float(line.split()[1]) < 1e-5, line
    line = run("")
    assert line.startswith("ERROR") and "adaptive_conv_ext::adaptive_conv2d_forward" in line, line
