"""adaptive_conv2d in the PyTorch ecosystem (issue 7): torch.compile, autocast,
channels_last and strided inputs, deterministic mode, DDP, and conversion of the
paper's per-pair generator checkpoints. CPU only; the C++ side is csrc/test (ctest)."""

from __future__ import annotations

import copy
import os
import socket
import sys
import tempfile
import time

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from conftest import rel_err
from torch import nn

import adaptive_conv_ext as ace
from adaptive_conv_ext import _backends
from adaptive_conv_ext.paper import adaptive_conv2d_paper

pytestmark = pytest.mark.skipif(
    _backends.native_unavailable_reason(torch.device("cpu")) is not None,
    reason="the native CPU extension is not built",
)

BF16_TOL = 2e-2  # SPEC section 2, bfloat16


def small_model(backend="native", seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        ace.AdaptiveConv2d(3, 6, 3, padding=1, backend=backend),
        nn.ReLU(),
        ace.AdaptiveConv2d(6, 4, 3, stride=2, padding=1, dilation=1, groups=2, backend=backend),
        nn.Flatten(),
    )


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def run(model, x):
    """Forward and backward of a fixed scalar loss; returns (output, input grad, param grads)."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    y = model(x)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), x.grad, grads(model)


# --- torch.compile -------------------------------------------------------------


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph_matches_eager(fresh_dynamo, dynamic):
    eager = small_model()
    compiled = torch.compile(copy.deepcopy(eager), fullgraph=True, dynamic=dynamic)
    shapes = [(2, 3, 9, 8), (3, 3, 7, 11)] if dynamic else [(2, 3, 9, 8)]
    for shape in shapes:
        x = torch.randn(shape)
        y, gx, gp = run(eager, x)
        yc, gxc, gpc = run(compiled, x)
        assert yc.shape == y.shape
        torch.testing.assert_close(yc, y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gxc, gx, rtol=1e-5, atol=1e-5)
        for a, b in zip(gpc, gp):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compile_graphs_call_the_fused_ops(fresh_dynamo):
    # One graph each way, and the fused operators are in it (not a decomposition).
    from torch._dynamo.backends.common import aot_autograd

    seen = {"fw": [], "bw": []}

    def recorder(kind):
        def compiler(gm, example_inputs):
            seen[kind].append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
            return gm

        return compiler

    backend = aot_autograd(fw_compiler=recorder("fw"), bw_compiler=recorder("bw"))
    model = torch.compile(small_model(), backend=backend, fullgraph=True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    model(x).sum().backward()
    assert len(seen["fw"]) == 1 and len(seen["bw"]) == 1
    assert "adaptive_conv_ext.adaptive_conv2d_forward.default" in seen["fw"][0]
    assert "adaptive_conv_ext.adaptive_conv2d_backward.default" in seen["bw"][0]


def test_ops_pass_opcheck():
    # Schema, fake (meta) implementations and AOT dispatch, with and without optionals.
    ops = torch.ops.adaptive_conv_ext
    d = torch.float64
    x, w = torch.randn(2, 4, 7, 6, dtype=d), torch.randn(6, 2, 3, 3, 3, 3, dtype=d)
    kb, b = torch.randn(6, 2, 3, 3, dtype=d), torch.randn(6, dtype=d)
    geometry = ([1, 2], [1, 0], [1, 1], 2)
    torch.library.opcheck(ops.adaptive_conv2d_forward.default, (x, w, kb, b, *geometry))
    torch.library.opcheck(ops.adaptive_conv2d_forward.default, (x, w, None, None, *geometry))
    gy = torch.randn(2, 6, 7, 2, dtype=d)
    for kernel_bias in (kb, None):
        for mask in ([True, True], [True, False], [False, True]):
            torch.library.opcheck(ops.adaptive_conv2d_backward.default, (gy, x, w, kernel_bias, *geometry, mask))


# --- autocast -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_autocast_cpu_bfloat16(backend):
    # One layer: SPEC's tolerance is per operator (the reference keeps sigma and K in
    # bfloat16 too, so a deep stack of it drifts further than the fused kernels).
    torch.manual_seed(0)
    model = ace.AdaptiveConv2d(4, 6, 3, padding=1, groups=2, backend=backend)
    x = torch.randn(2, 4, 10, 10)
    y32, gx32, gp32 = run(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, gx, gp = run(model, x)
        y_bf16_input = model(x.bfloat16())  # already-cast activations mix with float32 params
    assert y.dtype == torch.bfloat16 and y_bf16_input.dtype == torch.bfloat16
    assert rel_err(y, y32) < BF16_TOL
    torch.testing.assert_close(y_bf16_input, y)
    # The casts are differentiable: float32 leaves get float32 gradients.
    assert gx.dtype == torch.float32 and rel_err(gx, gx32) < BF16_TOL
    for p, g, g32 in zip(model.parameters(), gp, gp32):
        assert p.dtype == g.dtype == torch.float32
        assert rel_err(g, g32) < BF16_TOL


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_leaves_float64_alone_and_every_backend_computes_in_16_bits(backend, dtype):
    x, w = torch.randn(1, 2, 6, 6, dtype=torch.float64), torch.randn(3, 2, 3, 3, 3, 3, dtype=torch.float64)
    with torch.autocast("cpu", dtype=dtype):
        assert ace.adaptive_conv2d(x, w, backend=backend).dtype == torch.float64
        # Mixed float32/16-bit arguments all run in the autocast dtype: no float32 fallback.
        y = ace.adaptive_conv2d(x.to(dtype), w.float(), backend=backend)
    assert y.dtype == dtype
    ref = ace.adaptive_conv2d(x.to(dtype).double(), w.to(dtype).double(), backend="reference")
    assert rel_err(y, ref) < BF16_TOL


def test_autocast_under_compile(fresh_dynamo):
    model = small_model()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, yc = model(x), compiled(x)
    assert yc.dtype == torch.bfloat16
    torch.testing.assert_close(yc, y)


# --- memory formats and strides ---------------------------------------------------


def test_channels_last_in_channels_last_out():
    model = small_model()[:1]
    x = torch.randn(2, 3, 9, 7)
    y, gx, gp = run(model, x)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert not x_cl.is_contiguous()
    model.zero_grad(set_to_none=True)
    x_cl.requires_grad_()
    y_cl = model(x_cl)
    assert y_cl.is_contiguous(memory_format=torch.channels_last) and not y_cl.is_contiguous()
    (y_cl * torch.linspace(-1, 1, y_cl.numel()).view_as(y)).sum().backward()
    torch.testing.assert_close(y_cl, y, rtol=0, atol=0)
    torch.testing.assert_close(x_cl.grad, gx, rtol=0, atol=0)
    for a, b in zip(grads(model), gp):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_non_contiguous_inputs_and_weights(backend):
    torch.manual_seed(1)
    big = torch.randn(3, 8, 12, 10, dtype=torch.float64)
    views = {
        "transposed": big[:, :4].transpose(2, 3),  # (3, 4, 10, 12)
        "sliced": big[::2, 1::2, 1:-1:2, ::3],  # (2, 4, 5, 4)
        "channel-sliced": big[:, 2:6],
    }
    w_big = torch.randn(6, 2, 3, 3, 3, 3, 2, dtype=torch.float64)
    w = w_big[..., 1]  # every dimension strided
    kb = torch.randn(3, 6, 2, 3, dtype=torch.float64).permute(1, 2, 0, 3)  # (6, 2, 3, 3)
    b = torch.randn(12, dtype=torch.float64)[::2]
    assert not (w.is_contiguous() or kb.is_contiguous() or b.is_contiguous())
    for name, view in views.items():
        assert not view.is_contiguous(), name
        tensors = [t.clone().requires_grad_() for t in (view, w, kb, b)]
        contiguous = [t.detach().contiguous().requires_grad_() for t in tensors]
        outs = []
        for args in (tensors, contiguous):
            y = ace.adaptive_conv2d(*args, padding=1, stride=(1, 2), groups=2, backend=backend)
            y.backward(torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y))
            outs.append([y.detach()] + [t.grad for t in args])
        for a, ref in zip(*outs):
            torch.testing.assert_close(a, ref, rtol=1e-12, atol=1e-12)


# --- deterministic mode -------------------------------------------------------------


@pytest.fixture
def deterministic():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_deterministic_backward_is_bitwise_reproducible(deterministic):
    # Large enough that the CPU backward splits the batch across every thread.
    model = small_model()
    x = torch.randn(8, 3, 16, 16)
    first = run(model, x)
    for _ in range(3):
        again = run(model, x)
        for a, b in zip(first[1:2] + tuple(first[2]), again[1:2] + tuple(again[2])):
            assert torch.equal(a, b)


def test_deterministic_mode_backward_on_meta_tensors(deterministic):
    # Shapes only: deterministic mode must not refuse them (it once did, through a
    # per-(backend, device) table that had no "meta" row).
    x = torch.randn(2, 2, 5, 5, device="meta", requires_grad=True)
    w = torch.randn(3, 2, 3, 3, 3, 3, device="meta", requires_grad=True)
    ace.adaptive_conv2d(x, w, padding=1).sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


# --- DistributedDataParallel ----------------------------------------------------------


def _ddp_model():
    torch.manual_seed(0)
    return nn.Sequential(
        ace.AdaptiveConv2d(2, 4, 3, padding=1, backend="native"),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _ddp_batches(rank, steps=3):
    g = torch.Generator().manual_seed(1000 + rank)  # each replica sees its own data
    return [(torch.randn(4, 2, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(steps)]


def _ddp_worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)  # two processes on a small machine
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if sys.platform == "linux":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only, whatever the hostname resolves to
    from datetime import timedelta

    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=30))
    try:
        model = _ddp_model()
        ddp = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
        for x, t in _ddp_batches(rank):
            opt.zero_grad()
            F.cross_entropy(ddp(x), t).backward()
            opt.step()
        torch.save([p.detach() for p in model.parameters()], os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="no gloo")
def test_ddp_two_gloo_processes_keep_replicas_identical():
    import torch.multiprocessing as mp

    deadline = time.monotonic() + 60
    with tempfile.TemporaryDirectory() as out_dir:
        ctx = mp.start_processes(
            _ddp_worker, args=(2, _free_port(), out_dir), nprocs=2, join=False, start_method="spawn"
        )
        try:
            while not ctx.join(timeout=1):
                if time.monotonic() > deadline:
                    pytest.fail("DDP workers did not finish within 60 s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
        replicas = [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(2)]

    for a, b in zip(*replicas):
        assert torch.equal(a, b)
    # And DDP's averaged gradients are those of the two batches together.
    model = _ddp_model()
    initial = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for (x0, t0), (x1, t1) in zip(_ddp_batches(0), _ddp_batches(1)):
        opt.zero_grad()
        F.cross_entropy(model(torch.cat([x0, x1])), torch.cat([t0, t1])).backward()
        opt.step()
    for a, b, p0 in zip(replicas[0], model.parameters(), initial):
        assert not torch.equal(a, p0)
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


# --- the paper's checkpoints ------------------------------------------------------------


def paper_generators(O, C, k, bias=True, seed=0):
    """[o][c] generators as the authors' code builds them, with random weights."""
    torch.manual_seed(seed)
    return nn.ModuleList(
        nn.ModuleList(nn.Conv2d(1, k * k, k, padding=k // 2, bias=bias).double() for _ in range(C))
        for _ in range(O)
    )


def paper_forward(generators, x):
    """The paper's loop, on the modules themselves: generator channel k*i + j multiplies
    the input shifted by i columns and j rows (SPEC, "The paper's own layout")."""
    k = generators[0][0].kernel_size[0]
    p = k // 2
    N, C, H, W = x.shape
    padded = F.pad(x, (p, p, p, p))
    outs = []
    for row in generators:
        acc = torch.zeros_like(x[:, 0])
        for c, gen in enumerate(row):
            kernels = torch.tanh(gen(x[:, c : c + 1]))
            for i in range(k):
                for j in range(k):
                    acc = acc + padded[:, c, j : j + H, i : i + W] * kernels[:, k * i + j]
        outs.append(acc)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("bias", [True, False])
def test_convert_paper_generators(k, bias):
    O, C = 3, 2
    generators = paper_generators(O, C, k, bias)
    x = torch.randn(2, C, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        expected = paper_forward(generators, x)

    # From the modules, from the stacked tensors, and from both state-dict layouts.
    gen_w = torch.stack([torch.stack([g.weight.detach() for g in row]) for row in generators])
    gen_b = torch.stack([torch.stack([g.bias.detach() for g in row]) for row in generators]) if bias else None
    nested_sd = {f"layer.gens.{k_}": v for k_, v in generators.state_dict().items()}
    flat = nn.ModuleList(g for row in generators for g in row)  # index o*C + c
    conversions = {
        "modules": ace.weight_from_paper(generators),
        "tensors": ace.weight_from_paper(gen_w, gen_b),
        "nested lists": ace.weight_from_paper([list(r) for r in gen_w], None if gen_b is None else list(gen_b)),
        "nested state dict": tuple(
            ace.weight_from_paper_state_dict(nested_sd, "layer.gens").get(n) for n in ("weight", "kernel_bias")
        ),
        "flat state dict": tuple(
            ace.weight_from_paper_state_dict(flat.state_dict(), "", in_channels=C).get(n)
            for n in ("weight", "kernel_bias")
        ),
    }
    for name, (weight, kernel_bias) in conversions.items():
        assert weight.shape == (O, C, k, k, k, k), name
        assert (kernel_bias is None) == (not bias), name
        y = ace.adaptive_conv2d(x, weight, kernel_bias, padding=k // 2, backend="native")
        torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12, msg=name)
        torch.testing.assert_close(adaptive_conv2d_paper(x, weight, kernel_bias), expected, rtol=1e-12, atol=1e-12)

    # A layer loads the converted state dict and matches the paper's model.
    weight, kernel_bias = conversions["modules"]
    layer = ace.AdaptiveConv2d(C, O, k, padding=k // 2, bias=False, kernel_bias=bias, dtype=torch.float64)
    layer.load_state_dict(ace.weight_from_paper_state_dict(nested_sd, "layer.gens"))
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)

    # And back: the inverse gives the generators' own tensors and state dicts.
    back_w, back_b = ace.weight_to_paper(weight, kernel_bias)
    assert torch.equal(back_w, gen_w) and (back_b is None or torch.equal(back_b, gen_b))
    for flat_keys, reference in ((False, generators.state_dict()), (True, flat.state_dict())):
        sd = ace.weight_to_paper_state_dict(weight, kernel_bias, prefix="", flat=flat_keys)
        assert sd.keys() == reference.keys()
        assert all(torch.equal(sd[key], reference[key]) for key in sd)


def test_convert_rejects_bad_checkpoints():
    generators = paper_generators(2, 2, 3)
    sd = generators.state_dict()
    with pytest.raises(KeyError, match="no generator keys"):
        ace.weight_from_paper_state_dict(sd, "missing")
    with pytest.raises(ValueError, match="in_channels"):
        ace.weight_from_paper_state_dict(sd, "", in_channels=3)
    del sd["1.0.bias"]
    with pytest.raises(KeyError, match="'1.0.bias'"):
        ace.weight_from_paper_state_dict(sd, "")
    flat = nn.ModuleList(g for row in generators for g in row).state_dict()
    with pytest.raises(ValueError, match="needs in_channels"):
        ace.weight_from_paper_state_dict(flat, "")
    with pytest.raises(ValueError, match=r"\(k\*k, 1, k, k\)"):
        ace.weight_from_paper(torch.randn(2, 2, 8, 1, 3, 3))
