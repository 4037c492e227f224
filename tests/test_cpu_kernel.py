"""The fused CPU kernel's own properties: its float32 vector tanh against float64 over
the whole float32 range, results that do not depend on the thread count, and memory
that stays O(inputs + outputs) where sigma would not fit.

The ISA builds (AVX-512, AVX2, portable) are chosen from ATEN_CPU_CAPABILITY, read
at start-up, so each check runs in a child process per build."""

import os
import subprocess
import sys

import pytest
import torch

import adaptive_conv_ext  # noqa: F401 - registers the operators

CAPABILITIES = ["default", "avx2", "avx512"]


def run_child(code: str, capability: str, extra_env=None, timeout=600) -> str:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, **(extra_env or {})}
    probe = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
        env=env, capture_output=True, text=True, check=True,
    )
    if probe.stdout.strip().lower() != capability:
        pytest.skip(f"this CPU cannot run {capability} (torch chose {probe.stdout.strip()})")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


# ------------------------------------------------------------------ tanh
# y[0, o] = tanh(Q[o]) * 1 for a 1x1 kernel on a 1x1 image of value 1 (no biases):
# sigma = Q[o] exactly, so the output is the kernel's tanh of every value in Q.
_TANH_SWEEP = """
import torch, adaptive_conv_ext
step = {step}
pos = torch.arange(0, 0x7F800000, step, dtype=torch.int64)
pos = torch.cat([pos, torch.tensor([1, 2, 3, 0x007FFFFF, 0x00800000, 0x3F800000, 0x41100000, 0x41100001,
                                    0x7F7FFFFF, 0x7F800000, 0x7FC00000])]).to(torch.int32).view(torch.float32)
vals = torch.cat([pos, -pos])
O = vals.numel()
x = torch.ones(1, 1, 1, 1)
w = vals.reshape(O, 1, 1, 1, 1, 1)
y = torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, None, None, [1, 1], [0, 0], [1, 1], 1).reshape(O)
ref = torch.tanh(vals.double())
finite = torch.isfinite(ref) & (ref != 0)
rel = ((y.double() - ref).abs() / ref.abs())[finite]
assert rel.max().item() < 1e-6, (rel.max().item(), vals[finite][rel.argmax()].item())
# exact where it must be: tanh(+-0) = 0 (the output adds it to 0, so its sign is not seen),
# +-Inf saturate to +-1, NaN stays NaN
zero = vals == 0
assert (y[zero] == 0).all()
inf = torch.isinf(vals)
assert torch.equal(y[inf], torch.sign(vals[inf]))
nan = torch.isnan(vals)
assert nan.any() and torch.isnan(y[nan]).all() and not torch.isnan(y[~nan]).any()
assert (y[~nan].abs() <= 1).all(), (y[~nan][y[~nan].abs() > 1][:4].tolist(), vals[~nan][y[~nan].abs() > 1][:4].tolist())
tiny = (vals.abs() < 1e-4) & (vals != 0)  # tanh(x) rounds to x: subnormals included, not flushed
assert ((y[tiny] - vals[tiny]).abs() <= vals[tiny].abs() * 2**-23).all()
print(O, "values, max rel err %.3g" % rel.max().item())
"""


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_float32_tanh_against_float64_over_all_ranges(capability):
    # every 2^9-th float32 bit pattern from +0 to +Inf and its negative (16M values,
    # every binade densely, subnormals included), plus the edge cases
    out = run_child(_TANH_SWEEP.format(step=509), capability)
    assert "max rel err" in out


# The same through a 3x3 kernel, whose forward takes other paths (the portable build's
# scaled tanh: pre-scaled sigma rows, output divided by gamma): 1 x M output pixels at stride
# 3, pixel m reading taps (0, 0) = 1 and (0, 1) = v_m, zero elsewhere, and Q[kernel element
# (0, 0), tap (0, 1)] = 1 the only weight, so sigma(0, 0) = v_m and y_m = tanh(v_m) * 1 (the
# other kernel elements are tanh(0) = 0 times finite taps). Finite values only (tanh(0) * Inf
# would be NaN): the 1x1 sweep above covers Inf and NaN.
_TANH_SWEEP_3X3 = """
import torch, adaptive_conv_ext
pos = torch.arange(0, 0x7F800000, {step}, dtype=torch.int64)
pos = torch.cat([pos, torch.tensor([1, 0x007FFFFF, 0x00800000, 0x3F800000, 0x41100000, 0x41100001, 0x7F7FFFFF])])
pos = pos.to(torch.int32).view(torch.float32)
vals = torch.cat([pos, -pos])
M = vals.numel()
x = torch.zeros(1, 1, 3, 3 * M)
x[0, 0, 0, 0::3] = 1
x[0, 0, 0, 1::3] = vals
w = torch.zeros(1, 1, 3, 3, 3, 3)
w[0, 0, 0, 0, 0, 1] = 1
y = torch.ops.adaptive_conv_ext.adaptive_conv2d_forward(x, w, None, None, [3, 3], [0, 0], [1, 1], 1).reshape(M)
ref = torch.tanh(vals.double())
assert (y.abs() <= 1).all(), (y[y.abs() > 1][:4].tolist(), vals[y.abs() > 1][:4].tolist())
big = vals.abs() >= 1e-30  # below, the portable build's scaled tanh keeps an absolute error under 1e-36
rel = (y.double() - ref).abs()[big] / ref.abs()[big]
assert rel.max().item() < 1e-6, (rel.max().item(), vals[big][rel.argmax()].item())
assert ((y.double() - ref).abs()[~big] <= 1e-36).all()
assert (y[vals == 0] == 0).all()
print(M, "values, max rel err %.3g" % rel.max().item())
"""


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_float32_tanh_of_3x3_kernels_against_float64(capability):
    # every 4072nd float32 bit pattern from +0 to FLT_MAX and its negative (1M values)
    out = run_child(_TANH_SWEEP_3X3.format(step=4072), capability)
    assert "max rel err" in out


# ------------------------------------------------------------------ thread count
_THREADS = """
import torch, adaptive_conv_ext
from adaptive_conv_ext.reference import adaptive_conv2d_reference as ref
torch.use_deterministic_algorithms(True)
g = torch.Generator().manual_seed(0)
ops = torch.ops.adaptive_conv_ext
for dtype in (torch.float32, torch.float64):
    for N, C, O, H, W, k, pad, groups in ((1, 4, 6, 37, 29, 3, 1, 1), (2, 6, 6, 23, 40, 5, 2, 3), (1, 1, 3, 50, 9, 7, 3, 1),
                                         (1, 16, 8, 21, 19, 3, 1, 2),  # C >= 16: one band per channel
                                         (1, 3, 12, 10, 11, 3, 1, 1)):  # 12 outputs per group: staged tiles
        x = torch.randn(N, C, H, W, generator=g, dtype=dtype)
        w = torch.randn(O, C // groups, k, k, k, k, generator=g, dtype=dtype) / k
        kb = torch.randn(O, C // groups, k, k, generator=g, dtype=dtype) * 0.1
        y = ops.adaptive_conv2d_forward(x, w, kb, None, [1, 1], [pad, pad], [1, 1], groups)
        gy = torch.randn(y.shape, generator=g, dtype=dtype)
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            y_t = ops.adaptive_conv2d_forward(x, w, kb, None, [1, 1], [pad, pad], [1, 1], groups)
            grads = ops.adaptive_conv2d_backward(gy, x, w, kb, [1, 1], [pad, pad], [1, 1], groups, [True, True])
            results.append((y_t,) + tuple(grads))
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert torch.equal(a, b), (dtype, N, C, k)
        # and right: against the float64 reference
        xd, wd, kbd = (t.double().requires_grad_() for t in (x, w, kb))
        yr = ref(xd, wd, kbd, None, 1, pad, 1, groups)
        want = (yr,) + torch.autograd.grad(yr, (xd, wd, kbd), gy.double())
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        for a, b in zip(results[0], want):
            assert ((a.double() - b).norm() / b.norm()).item() < tol
print("ok")
"""


def test_backward_is_bitwise_equal_for_any_thread_count():
    # 1, 2 and 3 threads (more threads than this machine's cores is fine: the split of
    # the work is fixed by the shape, not by the thread count)
    out = run_child(_THREADS, torch.backends.cpu.get_cpu_capability().lower())
    assert out.strip() == "ok"


# ------------------------------------------------------------------ threads used
# The kernels split their work with torch::stable::parallel_for, whose parallel region
# runs inside libtorch (so the extension needs no -fopenmp of its own). Checked by what
# the threads did, not by speed: the CPU time each thread of the process spent in the
# kernels (/proc/self/task/*/stat, utime + stime). On one thread (a serial build, or a
# parallel_for that ran inline) a single thread holds all of it.
_THREADS_USED = """
import os, torch, adaptive_conv_ext
def cpu_ticks():
    ticks = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[tid] = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
x = torch.randn(1, 32, 64, 64, generator=g)
w = torch.randn(32, 32, 3, 3, 3, 3, generator=g) / 3
kb = torch.randn(32, 32, 3, 3, generator=g) * 0.1
ops = torch.ops.adaptive_conv_ext
y = ops.adaptive_conv2d_forward(x, w, kb, None, [1, 1], [1, 1], [1, 1], 1)  # pool started
for name, run in (
    ("forward", lambda: ops.adaptive_conv2d_forward(x, w, kb, None, [1, 1], [1, 1], [1, 1], 1)),
    ("backward", lambda: ops.adaptive_conv2d_backward(y, x, w, kb, [1, 1], [1, 1], [1, 1], 1, [True, True])),
):
    before = cpu_ticks()
    spent = {}
    while sum(spent.values()) < 200:  # at least 2 s of CPU time (100 ticks a second)
        run()
        after = cpu_ticks()
        spent = {tid: t - before.get(tid, 0) for tid, t in after.items()}
    shares = sorted((t / sum(spent.values()) for t in spent.values()), reverse=True)
    # the work is split evenly between the two threads
    assert shares[1] > 0.25, (name, shares[:3])
    print(name, "thread shares", " ".join("%.2f" % s for s in shares[:2]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads per-thread CPU time from /proc")
def test_kernels_run_on_more_than_one_thread():
    out = run_child(_THREADS_USED, torch.backends.cpu.get_cpu_capability().lower())
    assert "forward thread shares" in out and "backward thread shares" in out, out


# ------------------------------------------------------------------ memory
# sigma and K would need N*O*(C/g)*k*k*Ho*Wo floats (1.1 GiB here); the child may map at
# most 256 MiB beyond what it holds after start-up and the inputs, so any buffer of
# that size fails to allocate (RLIMIT_AS) instead of passing unnoticed.
_MEMORY = """
import resource, torch, adaptive_conv_ext
from adaptive_conv_ext.reference import adaptive_conv2d_reference as ref
N, C, O, H, k = 1, 8, 8, 700, 3
T = N * O * C * k * k * H * H
assert T * 4 > 4 * 2**28
g = torch.Generator().manual_seed(0)
x = torch.randn(N, C, H, H, generator=g)
w = torch.randn(O, C, k, k, k, k, generator=g) / k
kb = torch.randn(O, C, k, k, generator=g) * 0.1
gy = torch.randn(N, O, H, H, generator=g)
x.requires_grad_(); w.requires_grad_(); kb.requires_grad_()
def vm_kb():
    return int([l for l in open("/proc/self/status") if l.startswith("VmSize:")][0].split()[1])
cap = vm_kb() * 1024 + 2**28
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
y = adaptive_conv_ext.adaptive_conv2d(x, w, kb, None, padding=1, backend="native")
y.backward(gy)
assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and torch.isfinite(w.grad).all()
# a check that the cap bites: the unfold reference needs sigma and fails
try:
    with torch.no_grad():
        ref(x, w, kb, None, 1, 1, 1, 1)
except RuntimeError as exc:
    assert "memory" in str(exc).lower() or "alloc" in str(exc).lower(), exc
    print("ok")
else:
    print("cap did not bite")
# the result is right: one output pixel against the float64 reference on its patch
i, j = 350, 5
patch = x.detach()[:, :, i - 1:i + 2, j - 1:j + 2].double()
want = ref(patch, w.detach().double(), kb.detach().double(), None, 1, 0, 1, 1)[0, :, 0, 0]
assert ((y.detach()[0, :, i, j].double() - want).norm() / want.norm()).item() < 1e-6
"""


def test_memory_stays_linear_where_sigma_would_not_fit():
    out = run_child(_MEMORY, torch.backends.cpu.get_cpu_capability().lower(), timeout=900)
    assert out.strip() == "ok"


# ------------------------------------------------------------------ the two tile layouts
# The kernels read a tile's taps either from a gathered patch (staged) or in place from
# zero-padded input rows (direct: stride 1, at most 8 output channels per group, and at
# most 1/8 of the padded width P = W + 2 pW dropped, i.e. 8 (kW - 1) dW <= P). Direct
# cases: no padding (rows wrap into real data), padding beyond the kernel's reach,
# dilation, an even kernel, 1x1 on an image narrower than a vector; staged cases beside
# them; all against the float64 unfold reference, forward and every gradient.
_LAYOUT_CASES = [
    # N, C, O, H, W, kH, kW, pad, dil, stride, groups         layout
    (2, 3, 3, 11, 30, 3, 3, (1, 1), (1, 1), 1, 3),        # direct: depthwise
    (1, 2, 4, 7, 20, 3, 3, (0, 0), (1, 1), 1, 2),         # direct: no padding
    (2, 1, 6, 12, 28, 5, 5, (2, 2), (1, 1), 1, 1),        # direct: lenet-like
    (1, 2, 2, 9, 40, 3, 3, (3, 1), (2, 1), 1, 2),         # direct: pH beyond the reach, dilation
    (1, 4, 8, 6, 40, 2, 2, (1, 0), (1, 2), 1, 1),         # direct: even kernel, 8 outputs per group
    (3, 2, 2, 30, 3, 1, 1, (0, 0), (1, 1), 1, 1),         # direct: 1x1, 3 pixels wide
    (1, 2, 2, 8, 9, 3, 3, (1, 1), (1, 1), 1, 2),          # staged: drops 2 of 11 lanes
    (1, 3, 9, 10, 11, 3, 3, (1, 1), (1, 1), 1, 1),        # staged: 9 outputs per group
    (1, 2, 2, 13, 9, 3, 3, (1, 1), (1, 1), 2, 2),         # staged: stride 2
]


@pytest.mark.parametrize("case", _LAYOUT_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_both_tile_layouts_against_the_float64_reference(case, dtype):
    from adaptive_conv_ext.reference import adaptive_conv2d_reference as ref
    from conftest import make_problem, rel_err

    N, C, O, H, W, kH, kW, pad, dil, stride, groups = case
    x, w, kb, b = make_problem(N=N, C=C, O=O, H=H, W=W, k=(kH, kW), groups=groups, seed=sum(case[:5]))
    args = ([stride, stride], list(pad), list(dil), groups)
    ops = torch.ops.adaptive_conv_ext
    y = ops.adaptive_conv2d_forward(x.to(dtype), w.to(dtype), kb.to(dtype), b.to(dtype), *args)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = ops.adaptive_conv2d_backward(gy.to(dtype), x.to(dtype), w.to(dtype), kb.to(dtype), *args, [True, True])
    leaves = [t.clone().requires_grad_() for t in (x, w, kb)]
    yr = ref(*leaves, b, stride, pad, dil, groups)
    want = (yr,) + torch.autograd.grad(yr, leaves, gy)
    tol = 2e-6 if dtype == torch.float32 else 1e-12
    for name, got, exp in zip(("output", "grad_input", "grad_weight", "grad_kernel_bias"), (y,) + tuple(grads), want):
        assert got.shape == exp.shape, name
        assert rel_err(got, exp) < tol, (name, rel_err(got, exp))
