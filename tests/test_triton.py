"""Tests of the Triton backend (adaptive_conv_ext/triton).

Without a GPU the kernels run under the Triton interpreter. TRITON_INTERPRET has to be
set before triton is imported, and other tests of this pytest process may already have
imported it, so the interpreter cases run in worker subprocesses of this very file
(``python tests/test_triton.py --worker NAME``), started once per module and in
parallel; each test then checks its case's numbers. Other workers check, without the
interpreter, that the kernels compile for sm_80/sm_90 (Triton's bundled ptxas needs no
GPU) and that CPU tensors get a clear error. GPU tests run in this process and skip
without CUDA.

Errors are SPEC section 2's ||out - ref|| / ||ref|| against the reference computed in
float64 on the upcast inputs.
"""

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import TOLERANCE, make_problem, rel_err

TOL = {name: TOLERANCE[getattr(torch, name)] for name in ("float32", "float16", "bfloat16")}
TOL_FAST = 1e-3  # float32 through TF32 or the approximate tanh (SPEC section 2)
OUTPUTS = ("y", "grad_input", "grad_weight", "grad_kernel_bias", "grad_bias")


# --------------------------------------------------------------------------- shared helpers


def make_inputs(N, C, H, W, O, k, groups, dtype, device="cpu", kb=True, bias=True, seed=0):
    """conftest.make_problem with sigma O(1) (scale 1.5): tanh neither linear nor
    saturated everywhere; arguments in the order of the geometry tables below."""
    return make_problem(N=N, C=C, O=O, H=H, W=W, k=k, groups=groups, dtype=dtype, device=device,
                        kernel_bias=kb, bias=bias, seed=seed, scale=1.5)


def forward_backward(x, w, kb, b, conv, backend, grad_out_seed=1, **ref_kwargs):
    """y and the gradients of every given tensor, with a fixed random grad_output."""
    from adaptive_conv_ext import adaptive_conv2d
    from adaptive_conv_ext.reference import adaptive_conv2d_reference

    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, w, kb, b)]
    if backend == "reference64":
        leaves = [t.detach().double().requires_grad_() if t is not None else None for t in leaves]
        y = adaptive_conv2d_reference(*leaves, *conv, **ref_kwargs)
    else:
        y = adaptive_conv2d(*leaves, *conv, backend=backend)
    g = torch.Generator().manual_seed(grad_out_seed)
    go = torch.randn(y.shape, generator=g, dtype=torch.float64).to(device=y.device, dtype=x.dtype)
    live = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(y, live, go.to(y.dtype)) if y.numel() else [torch.zeros_like(t) for t in live]
    it = iter(grads)
    out = {"y": y.detach()}
    for name, t in zip(("grad_input", "grad_weight", "grad_kernel_bias", "grad_bias"), leaves):
        if t is not None:
            out[name] = next(it)
    return out


def compare(out, ref):
    return {k: rel_err(out[k], ref[k]) for k in ref}


def _default_and_deterministic(x, w, kb, b, conv):
    """forward_backward on the Triton backend, in default and in deterministic mode."""
    outs = {}
    for det in (False, True):
        torch.use_deterministic_algorithms(det)
        try:
            outs[det] = forward_backward(x, w, kb, b, conv, "triton")
        finally:
            torch.use_deterministic_algorithms(False)
    return outs


def _deterministic_twice(x, w, kb, b, conv):
    """Two forward_backward runs on the Triton backend in deterministic mode, which also
    NaN-fills torch.empty (fill_uninitialized_memory): unwritten outputs show."""
    torch.use_deterministic_algorithms(True)
    try:
        return tuple(forward_backward(x, w, kb, b, conv, "triton") for _ in range(2))
    finally:
        torch.use_deterministic_algorithms(False)


# --------------------------------------------------------------------------- interpreter cases
# (id, N, C, H, W, O, (kH, kW), stride, padding, dilation, groups, kernel_bias, bias)

GEOMETRIES = [
    ("basic", 2, 2, 5, 5, 3, (3, 3), 1, 1, 1, 1, True, True),
    ("stride2", 1, 3, 7, 6, 2, (3, 3), 2, 1, 1, 1, True, True),
    ("dilation_rect", 1, 2, 7, 8, 2, (2, 3), (1, 2), (2, 1), (2, 1), 1, True, True),
    ("groups", 1, 4, 5, 4, 4, (3, 3), 1, 1, 1, 2, True, True),
    ("depthwise", 1, 3, 5, 5, 3, (3, 3), 1, 1, 1, 3, True, False),
    ("one_by_one", 2, 3, 4, 4, 2, (1, 1), 1, 0, 1, 1, True, True),
    ("rect_1x3_stride3", 1, 2, 4, 9, 2, (1, 3), (1, 3), (0, 1), 1, 1, True, True),
    ("no_biases", 1, 2, 5, 5, 2, (3, 3), 1, 1, 1, 1, False, False),
    ("channel_tiles", 1, 1, 4, 5, 18, (2, 2), 1, 0, 1, 1, True, True),
    ("batch0", 0, 2, 4, 4, 2, (3, 3), 1, 1, 1, 1, True, True),
]

# (case id, geometry id, dtype, mode, deterministic)
CASES = []
for _geo in GEOMETRIES:
    for _mode in ("o", "uv"):
        CASES.append((f"{_geo[0]}-float32-{_mode}", _geo[0], "float32", _mode, False))
for _geo_id, _mode in (("groups", "o"), ("stride2", "uv"), ("channel_tiles", "o")):
    for _dt in ("float16", "bfloat16"):
        CASES.append((f"{_geo_id}-{_dt}-{_mode}", _geo_id, _dt, _mode, False))
for _geo_id, _mode in (("basic", "o"), ("dilation_rect", "uv"), ("groups", "uv"), ("stride2", "o")):
    CASES.append((f"{_geo_id}-float32-{_mode}-deterministic", _geo_id, "float32", _mode, True))
CASES.append(("basic-float16-uv-deterministic", "basic", "float16", "uv", True))

MISC = ["output_mask", "nan_propagation", "torch_compile", "unbatched", "tanh_accuracy", "float64_error",
        "gpu_launch_path", "large_nl", "gw_block_p"]


def _run_case(case):
    from adaptive_conv_ext.triton import ops

    cid, geo_id, dtype_name, mode, det = case
    geo = {g[0]: g for g in GEOMETRIES}[geo_id]
    _, N, C, H, W, O, k, stride, padding, dilation, groups, has_kb, has_b = geo
    dtype = getattr(torch, dtype_name)
    x, w, kb, b = make_inputs(N, C, H, W, O, k, groups, dtype, kb=has_kb, bias=has_b)
    conv = (stride, padding, dilation, groups)
    ref = forward_backward(x, w, kb, b, conv, "reference64")
    ops.force_mode = mode
    result = {}
    if det:
        # Deterministic mode also NaN-fills torch.empty (fill_uninitialized_memory):
        # every output element must have been written. A 1-byte budget makes the
        # grad_input column buffer go one image at a time.
        ops.workspace_bytes = 1
        try:
            first, second = _deterministic_twice(x, w, kb, b, conv)
        finally:
            ops.workspace_bytes = 256 << 20
        result["repeatable"] = all(torch.equal(first[k], second[k]) for k in first)
        out = first
    else:
        out = forward_backward(x, w, kb, b, conv, "triton")
    result["finite"] = all(bool(torch.isfinite(v).all()) for v in out.values())
    result["dtypes_ok"] = all(v.dtype == dtype for v in out.values())
    result["errors"] = compare(out, ref)
    return result


def _misc(name):
    from adaptive_conv_ext import adaptive_conv2d
    from adaptive_conv_ext.triton import ops

    res = {}
    if name == "output_mask":
        # Direct op calls: masked-off gradients are empty; grad_kernel_bias is computed
        # even without a kernel_bias (it is the gradient at beta = 0).
        x, w, _, _ = make_inputs(2, 2, 5, 5, 3, (3, 3), 1, torch.float32, kb=False, bias=False)
        conv = ([1, 1], [1, 1], [1, 1], 1)
        zero_kb = torch.zeros(3, 2, 3, 3)
        ref = forward_backward(x, w, zero_kb, None, conv, "reference64")
        go = torch.randn(ref["y"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
        for mode in ("o", "uv"):
            ops.force_mode = mode
            gi, gw, gkb = ops.backward(go, x, w, None, *conv, [False, True])
            res[f"{mode}_mask_w_shapes"] = [list(gi.shape), list(gw.shape), list(gkb.shape)]
            res[f"{mode}_grad_weight"] = rel_err(gw, ref["grad_weight"])
            res[f"{mode}_grad_kernel_bias"] = rel_err(gkb, ref["grad_kernel_bias"])
            gi, gw, gkb = ops.backward(go, x, w, None, *conv, [True, False])
            res[f"{mode}_mask_in_shapes"] = [list(gi.shape), list(gw.shape), list(gkb.shape)]
            res[f"{mode}_grad_input"] = rel_err(gi, ref["grad_input"])
            y = ops.forward(x, w, None, None, *conv)
            res[f"{mode}_y"] = rel_err(y, ref["y"])
    elif name == "nan_propagation":
        # NaN reaches exactly the outputs it reaches in the reference.
        x, w, kb, b = make_inputs(1, 2, 6, 6, 2, (3, 3), 1, torch.float32)
        x[0, 1, 2, 4] = float("nan")
        conv = (1, 1, 1, 1)
        ref = forward_backward(x, w, kb, b, conv, "reference64")
        for mode in ("o", "uv"):
            ops.force_mode = mode
            out = forward_backward(x, w, kb, b, conv, "triton")
            res[mode] = {k: bool(torch.equal(torch.isnan(out[k]), torch.isnan(ref[k]))) for k in ref}
            res[mode + "_some_nan"] = bool(torch.isnan(out["y"]).any())
            fin = ~torch.isnan(ref["y"])
            res[mode + "_finite_part"] = rel_err(out["y"][fin], ref["y"][fin])
    elif name == "torch_compile":
        ops.force_mode = None
        x, w, kb, b = make_inputs(1, 2, 5, 5, 2, (3, 3), 1, torch.float32)
        conv = (1, 1, 1, 1)
        eager = forward_backward(x, w, kb, b, conv, "triton")

        def f(x, w, kb, b):
            return adaptive_conv2d(x, w, kb, b, 1, 1, 1, 1, backend="triton")

        for dynamic in (False, True):
            torch._dynamo.reset()
            compiled = torch.compile(f, backend="aot_eager", fullgraph=True, dynamic=dynamic)
            leaves = [t.clone().requires_grad_() for t in (x, w, kb, b)]
            y = compiled(*leaves)
            go = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).float()
            grads = torch.autograd.grad(y, leaves, go)
            out = dict(zip(OUTPUTS, [y.detach(), *grads]))
            res[f"errors_vs_eager_dynamic_{dynamic}"] = compare(out, eager)
    elif name == "unbatched":
        ops.force_mode = None
        x, w, kb, b = make_inputs(1, 2, 5, 5, 2, (3, 3), 1, torch.float32)
        x = x[0]
        ref = forward_backward(x, w, kb, b, (2, 1, 1, 1), "reference64")
        out = forward_backward(x, w, kb, b, (2, 1, 1, 1), "triton")
        res["errors"] = compare(out, ref)
    elif name == "tanh_accuracy":
        # The kernels' own tanh (no libdevice under the interpreter) on a dense grid.
        import triton
        import triton.language as tl
        from adaptive_conv_ext.triton import kernels

        global _K  # the interpreter resolves names in the kernel's module globals
        _K = kernels

        @triton.jit
        def tanh_kernel(x_ptr, t_ptr, d_ptr, n, BLOCK: tl.constexpr):
            offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            m = offs < n
            t, d = _K._tanh_d(tl.load(x_ptr + offs, mask=m, other=0.0), _K.TANH_EXACT)
            tl.store(t_ptr + offs, t, mask=m)
            tl.store(d_ptr + offs, d, mask=m)

        xs = torch.cat([torch.linspace(-12, 12, 20001), torch.logspace(-8, 1.5, 2000),
                        -torch.logspace(-8, 1.5, 2000), torch.tensor([0.0, 0.125, -0.125, 100.0, -100.0])])
        xs = torch.cat([xs, torch.tensor([float("inf"), -float("inf"), float("nan")])]).float()
        t = torch.empty_like(xs)
        d = torch.empty_like(xs)
        tanh_kernel[(triton.cdiv(xs.numel(), 1024),)](xs, t, d, xs.numel(), BLOCK=1024)
        fin = torch.isfinite(xs)
        ref_t = torch.tanh(xs[fin].double())
        ref_d = torch.cosh(xs[fin].double()) ** -2
        res["max_abs_t"] = (t[fin].double() - ref_t).abs().max().item()
        res["max_rel_t"] = ((t[fin].double() - ref_t).abs() / ref_t.abs().clamp_min(1e-30)).max().item()
        res["max_rel_d"] = ((d[fin].double() - ref_d).abs() / ref_d.clamp_min(1e-30)).max().item()
        res["specials"] = [t[-3].item(), t[-2].item(), str(t[-1].item()), d[-3].item()]
    elif name == "gpu_launch_path":
        # ops' GPU-side launching, run by the interpreter: the autotuned kernels (GPU
        # tile configs, reset_to_zero of the atomic grad_input buffer between trials)
        # and the fixed configs of deterministic mode, for each padded-tap bucket.
        import triton

        def bench(fn, quantiles=None, **_):
            t0 = time.perf_counter()
            fn()
            ms = (time.perf_counter() - t0) * 1e3
            return [ms, ms, ms] if quantiles else ms

        saved = {k: getattr(ops, k) for k in ("INTERPRET", "_check", "_split_count", "autotune")}
        saved_tuned = dict(ops._TUNED)
        try:
            ops.INTERPRET = False
            ops.autotune = True
            ops._check = lambda *a, **k: None  # it would refuse CPU tensors outside the interpreter
            ops._split_count = lambda blocks, items, per_split, device: max(1, min(3, items))
            for key in [(n, b) for n in ops._TUNE for b in range(3)]:
                reset = ["dx_ptr"] if key[0].startswith("gin") else None
                configs = ops._tune_configs(*key)[:2]  # two trials are enough to test resetting
                ops._TUNED[key] = triton.autotune(configs=configs, key=ops._KEYS[key[0]],
                                                  reset_to_zero=reset, do_bench=bench)(ops._RAW[key[0]])
            for geo, mode in (((1, 2, 7, 7, 20, (3, 3), 1, 1, 1, 1), "o"),
                              ((2, 1, 7, 6, 2, (5, 5), 1, 2, 1, 1), "uv")):
                N, C, H, W, O, k, stride, padding, dilation, groups = geo
                ops.force_mode = mode
                x, w, kb, b = make_inputs(N, C, H, W, O, k, groups, torch.float32)
                conv = (stride, padding, dilation, groups)
                ref = forward_backward(x, w, kb, b, conv, "reference64")
                for det, out in _default_and_deterministic(x, w, kb, b, conv).items():
                    res[f"{mode}_k{k[0]}_det{int(det)}"] = compare(out, ref)
        finally:
            for k, v in saved.items():
                setattr(ops, k, v)
            ops._TUNED.clear()
            ops._TUNED.update(saved_tuned)
    elif name == "large_nl":
        # 2^17 output pixels (8 images of 128 x 128) share every weight: the float32
        # weight gradients sum 2^17 terms and must still meet SPEC's 1e-6, in both modes.
        # One channel and large interpreter tiles keep it quick.
        import triton

        saved = dict(ops._INTERP), ops._INTERP_CHUNK
        try:
            ops._INTERP_CHUNK = 512  # the float32 sums of 512 pixels stay well within 1e-6
            ops._INTERP.update(fwd_uv=triton.Config({"BLOCK_P": 2048}), gin_uv=triton.Config({"BLOCK_P": 2048}),
                               gw_uv=triton.Config({"BLOCK_P": 256}), col2im=triton.Config({"BLOCK": 4096}))
            ops.force_mode = "uv"
            x, w, kb, b = make_inputs(8, 1, 128, 128, 1, (3, 3), 1, torch.float32)
            conv = (1, 1, 1, 1)
            ref = forward_backward(x, w, kb, b, conv, "reference64")
            res["pixels"] = ref["y"].numel()
            for det, out in _default_and_deterministic(x, w, kb, b, conv).items():
                res[f"det{int(det)}"] = compare(out, ref)
        finally:
            ops._INTERP.clear()
            ops._INTERP.update(saved[0])
            ops._INTERP_CHUNK = saved[1]
    elif name == "gw_block_p":
        # The weight-gradient reduction is fixed by the chunk, not the tile: deterministic
        # mode gives the same bits whatever tile is configured, and so does the fast path
        # with one tile per chunk; smaller fast-path tiles subdivide the same chunks.
        import triton

        saved = dict(ops._INTERP), ops._INTERP_CHUNK
        try:
            ops._INTERP_CHUNK = 32
            x, w, kb, b = make_inputs(2, 1, 10, 10, 2, (3, 3), 1, torch.float32)  # 100 pixels: 4 chunks
            conv = ([1, 1], [1, 1], [1, 1], 1)
            go = torch.randn(2, 2, 10, 10, generator=torch.Generator().manual_seed(1))
            for mode in ("o", "uv"):
                ops.force_mode = mode
                name_gw = "gw_" + mode
                runs = {}
                for det in (False, True):
                    for bp in (16, 32):
                        ops._INTERP[name_gw] = triton.Config(dict(ops._INTERP[name_gw].kwargs, BLOCK_P=bp))
                        torch.use_deterministic_algorithms(det)
                        try:
                            _, gw, gkb = ops.backward(go, x, w, kb, *conv, [False, True])
                        finally:
                            torch.use_deterministic_algorithms(False)
                        runs[det, bp] = (gw, gkb)
                ref_go = {}
                leaves = [t.double().requires_grad_() for t in (w, kb)]
                from adaptive_conv_ext.reference import adaptive_conv2d_reference

                y = adaptive_conv2d_reference(x.double(), *leaves, None, *conv)
                ref_go["gw"], ref_go["gkb"] = torch.autograd.grad(y, leaves, go.double())
                same = lambda a, c: all(torch.equal(u, v) for u, v in zip(runs[a], runs[c]))  # noqa: E731
                res[mode] = {
                    "det_equal_all_tiles": same((True, 16), (True, 32)),
                    "fast_one_tile_per_chunk_equals_det": same((False, 32), (True, 16)),
                    "errors": {f"det{int(d)}_bp{bp}": [rel_err(g[0], ref_go["gw"]), rel_err(g[1], ref_go["gkb"])]
                               for (d, bp), g in runs.items()},
                }
        finally:
            ops._INTERP.clear()
            ops._INTERP.update(saved[0])
            ops._INTERP_CHUNK = saved[1]
    elif name == "float64_error":
        x, w, kb, b = make_inputs(1, 1, 4, 4, 1, (3, 3), 1, torch.float64)
        res["raised"] = _raised(lambda: adaptive_conv2d(x, w, kb, b, backend="triton"), TypeError)
    return res


def _raised(call, *types, typed=False):
    """The message of the exception of one of `types` that call() raises, None if it
    returns (prefixed with the exception's type name when `typed`)."""
    try:
        call()
    except types as exc:
        return f"{type(exc).__name__}: {exc}" if typed else str(exc)
    return None


def _cost(job):
    """Rough interpreter cost: channel mode launches kH*kW times more dots."""
    kind, item = job
    if kind == "misc":
        return {"large_nl": 40.0, "gw_block_p": 30.0}.get(item, 6.0)
    geo = {g[0]: g for g in GEOMETRIES}[item[1]]
    T = geo[6][0] * geo[6][1]
    return (1.0 + (T if item[3] == "o" else 1)) * (2 if item[4] else 1)


def _split_jobs(n_workers):
    """Greedy longest-first assignment of every job to one of the interpreter workers."""
    jobs = [("case", c) for c in CASES] + [("misc", m) for m in MISC]
    loads = [0.0] * n_workers
    parts = [[] for _ in range(n_workers)]
    for job in sorted(jobs, key=_cost, reverse=True):
        i = loads.index(min(loads))
        loads[i] += _cost(job)
        parts[i].append(job)
    return parts


INTERP_WORKERS = ("interp_a", "interp_b")


def _worker_interp(which):
    # The interpreter's int32 overflow sanitizer makes every integer op several times
    # slower; these shapes are tiny, so it is switched off for speed.
    try:
        import dataclasses

        import triton.runtime.interpreter as interp

        interp.interpreter_builder.options = dataclasses.replace(
            interp.interpreter_builder.options, sanitize_overflow=False)
    except Exception:  # noqa: BLE001 (an internal detail of the interpreter; only speed)
        pass
    results = {}
    for kind, job in _split_jobs(len(INTERP_WORKERS))[INTERP_WORKERS.index(which)]:
        key = job[0] if kind == "case" else "misc:" + job
        t0 = time.time()
        try:
            results[key] = _run_case(job) if kind == "case" else _misc(job)
        except Exception as exc:  # noqa: BLE001 (reported to the test)
            import traceback

            results[key] = {"exception": f"{exc!r}\n{traceback.format_exc()}"}
        results[key]["seconds"] = round(time.time() - t0, 2)
    return results


def _aot_jobs(full):
    """(kernel name, constexprs, pointer dtypes, arch, config, dtype) to compile.

    The default set (about 50 compiles) is every kernel with its pinned configuration
    for each tap bucket (3x3, 5x5, 7x7) on sm_90 in float32 (exact) and bfloat16 (packed
    tanh), on sm_80 every float32 kernel and float16 ones (mma.sync instead of wgmma) of
    bucket 0, bfloat16 ones (no packed bfloat16 tanh there), and col2im. ADAPTIVE_CONV_AOT_FULL=1
    adds every autotune candidate, float32 with TF32 and float16 on both architectures
    (hundreds of compiles).
    """
    import torch

    from adaptive_conv_ext.triton import ops

    names = ("fwd_o", "fwd_uv", "gin_o", "gin_uv", "gw_o", "gw_uv")
    kernel_sizes = ((3, 3), (5, 5), (7, 7))
    plan = [(90, "fp32", kernel_sizes, names), (90, "bf16", kernel_sizes, names),
            (80, "fp32", ((3, 3),), names),
            (80, "fp16", ((3, 3),), ("fwd_o", "fwd_uv", "gin_o", "gw_uv")),
            (80, "bf16", ((3, 3),), ("fwd_uv", "gin_o"))]  # tanh.approx.bf16x2 is sm_90+: ptxas rejects it here
    if full:
        plan = [(arch, dt, kernel_sizes + ((1, 3),), names) for arch in (80, 90)
                for dt in ("fp32", "fp32-tf32", "fp16", "bf16")]
    torch_dtype = {"fp32": torch.float32, "fp32-tf32": torch.float32, "fp16": torch.float16,
                   "bf16": torch.bfloat16}
    jobs = []
    for arch, dt, ks, kernels in plan:
        ptr_dt = dt.split("-")[0]
        prec = "ieee" if dt == "fp32" else "tf32"
        io = {p: ptr_dt for p in ("x_ptr", "w_ptr", "kb_ptr", "b_ptr", "y_ptr", "go_ptr")}
        io["ws_ptr"] = "fp64"
        for kh, kw in ks:
            TP = ops._taps_padded(kh * kw)
            bucket = ops._bucket(TP)
            for name in kernels:
                backward = not name.startswith("fwd")
                consts = dict(KH=kh, KW=kw, TP=TP, HAS_KB=True, LOW_DOT=ptr_dt != "fp32", PREC=prec,
                              TANH=ops.tanh_form(torch_dtype[dt], (arch // 10, arch % 10), backward), IDX64=False)
                if name.startswith("fwd"):
                    consts["HAS_BIAS"] = True
                else:
                    consts["PREC_B"] = prec
                if name.startswith("gin"):
                    consts["DETERMINISTIC"] = name == "gin_uv"
                if name.startswith("gw"):
                    consts["CHUNK"] = ops._FIXED[name][bucket].kwargs["BLOCK_P"]
                configs = [ops._FIXED[name][bucket]] + (ops._tune_configs(name, bucket) if full else [])
                for cfg in configs:
                    jobs.append((name, dict(consts, **cfg.kwargs), io, arch, cfg, dt))
    jobs.append(("col2im", dict(KH=3, KW=3, IDX64=False, BLOCK=512), {"dx_ptr": "bf16"}, 90,
                 ops._FIXED["col2im"][0], "bf16"))
    return jobs


def _worker_aot(full=False):
    """Compile kernels for sm_80 / sm_90 down to cubin without a GPU (Triton's bundled
    ptxas) and read each one's PTX and resource usage (bundled cuobjdump): registers,
    stack frame (> 0 when ptxas spills), whether the PTX has tensor-core mma and which
    tanh.approx forms."""
    import re
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from adaptive_conv_ext.triton import ops

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    results = {"kernels": [], "failures": []}
    for name, consts, io, arch, cfg, dt in _aot_jobs(full):
        fn = ops._RAW[name]
        sig = {}
        for arg in fn.arg_names:
            if arg in consts:
                sig[arg] = "constexpr"
            elif arg.endswith("_ptr"):
                sig[arg] = "*" + io.get(arg, "fp32")
            else:
                sig[arg] = "i32"
        what = f"{name} sm_{arch} {dt} {cfg.kwargs} warps={cfg.num_warps} {consts}"
        try:
            kernel = triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", arch, 32),
                                    options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})
            with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                f.write(kernel.asm["cubin"])
                f.flush()
                usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
            m = re.search(r"REG:(\d+) STACK:(\d+)", usage)
            ptx = kernel.asm["ptx"]
            results["kernels"].append(dict(
                name=name, arch=arch, dtype=dt, tap_bucket=ops._bucket(consts.get("TP", 16)), config=cfg.kwargs,
                warps=cfg.num_warps, tanh=consts.get("TANH"), regs=int(m[1]) if m else None,
                stack=int(m[2]) if m else None, mma="mma" in ptx,
                tanh_ptx=sorted(set(re.findall(r"tanh\.approx\.\w+", ptx)))))
        except Exception as exc:  # noqa: BLE001 (reported to the test)
            results["failures"].append(f"{what}: {exc!r}"[:2000])
    return results


def _worker_host():
    """Without the interpreter: CPU tensors get clear errors, float64 a TypeError."""
    from adaptive_conv_ext import BackendUnavailableError, adaptive_conv2d, available_backends

    res = {}
    x, w, kb, b = make_inputs(1, 1, 4, 4, 1, (3, 3), 1, torch.float32)
    res["dispatch_error"] = _raised(lambda: adaptive_conv2d(x, w, kb, b, backend="triton"),
                                    BackendUnavailableError)
    res["available"] = available_backends("cpu")["triton"]
    from adaptive_conv_ext.triton import ops

    for name, args in (("op_cpu_error", (x, w, kb, b)), ("op_float64_error", [t.double() for t in (x, w, kb, b)])):
        res[name] = _raised(lambda args=args: ops.forward(*args, [1, 1], [0, 0], [1, 1], 1),
                            RuntimeError, TypeError, typed=True)
    return res


WORKERS = {
    "interp_a": True,  # name: runs under TRITON_INTERPRET=1
    "interp_b": True,
    "aot": False,
    "host": False,
}


# --------------------------------------------------------------------------- worker plumbing


class _Workers:
    """Starts every worker subprocess at once; each test waits for the one it needs."""

    def __init__(self):
        import adaptive_conv_ext

        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(adaptive_conv_ext.__file__)))
        self.procs = {}
        for name, interpret in WORKERS.items():
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([pkg_root] + [p for p in [env.get("PYTHONPATH")] if p])
            env.pop("TRITON_INTERPRET", None)
            if interpret:
                env["TRITON_INTERPRET"] = "1"
            env.setdefault("OMP_NUM_THREADS", "1")  # the workers run side by side
            self.procs[name] = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--worker", name],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        self.results = {}

    def get(self, name, timeout=900):
        if name not in self.results:
            proc = self.procs[name]
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"worker {name} timed out; stderr:\n{err[-5000:]}")
            lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                pytest.fail(f"worker {name} failed (rc {proc.returncode}); stderr:\n{err[-8000:]}")
            self.results[name] = json.loads(lines[-1][len("RESULT "):])
        return self.results[name]

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def _triton_installed():
    try:
        import importlib.util

        return importlib.util.find_spec("triton") is not None
    except Exception:  # noqa: BLE001
        return False


needs_triton = pytest.mark.skipif(not _triton_installed(), reason="triton is not installed")


@pytest.fixture(scope="module")
def workers():
    if not _triton_installed():
        pytest.skip("triton is not installed")
    w = _Workers()
    yield w
    w.close()


def _interp_result(workers, key):
    for name in INTERP_WORKERS:
        res = workers.get(name)
        if key in res:
            r = res[key]
            if "exception" in r:
                pytest.fail(r["exception"])
            return r
    pytest.fail(f"no interpreter result for {key}")


# --------------------------------------------------------------------------- interpreter tests


@needs_triton
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_interpreter_case(workers, case):
    cid, geo_id, dtype_name, mode, det = case
    r = _interp_result(workers, cid)
    tol = TOL[dtype_name]
    bad = {k: v for k, v in r["errors"].items() if not v <= tol}
    assert not bad, f"relative errors above {tol}: {bad} (all: {r['errors']})"
    assert r["finite"], "non-finite values in the outputs (unwritten elements?)"
    assert r["dtypes_ok"]
    if det:
        assert r["repeatable"], "deterministic mode is not bitwise repeatable"


@needs_triton
def test_interpreter_output_mask(workers):
    r = _interp_result(workers, "misc:output_mask")
    for mode in ("o", "uv"):
        assert r[f"{mode}_mask_w_shapes"] == [[0], [3, 2, 3, 3, 3, 3], [3, 2, 3, 3]]
        assert r[f"{mode}_mask_in_shapes"] == [[2, 2, 5, 5], [0], [0]]
        for k in ("grad_weight", "grad_kernel_bias", "grad_input", "y"):
            assert r[f"{mode}_{k}"] <= TOL["float32"], (mode, k, r)


@needs_triton
def test_interpreter_nan_propagation(workers):
    r = _interp_result(workers, "misc:nan_propagation")
    for mode in ("o", "uv"):
        assert r[mode + "_some_nan"]
        assert all(r[mode].values()), f"NaN pattern differs from the reference: {r[mode]}"
        assert r[mode + "_finite_part"] <= TOL["float32"]


@needs_triton
def test_interpreter_torch_compile(workers):
    r = _interp_result(workers, "misc:torch_compile")
    for dynamic in (False, True):
        assert all(v <= 1e-6 for v in r[f"errors_vs_eager_dynamic_{dynamic}"].values()), r


@needs_triton
def test_interpreter_unbatched(workers):
    r = _interp_result(workers, "misc:unbatched")
    assert all(v <= TOL["float32"] for v in r["errors"].values()), r


@needs_triton
def test_interpreter_tanh_accuracy(workers):
    r = _interp_result(workers, "misc:tanh_accuracy")
    assert r["max_abs_t"] < 2e-7, r
    assert r["max_rel_t"] < 2e-6, r
    assert r["max_rel_d"] < 2e-5, r
    assert r["specials"][:2] == [1.0, -1.0] and r["specials"][2] == "nan" and r["specials"][3] == 0.0, r


@needs_triton
def test_interpreter_gpu_launch_path(workers):
    r = _interp_result(workers, "misc:gpu_launch_path")
    runs = {k: v for k, v in r.items() if k != "seconds"}
    assert len(runs) == 4, r
    for run, errors in runs.items():
        assert all(v <= TOL["float32"] for v in errors.values()), (run, errors)


@needs_triton
def test_interpreter_large_batch_weight_gradients(workers):
    """N*Ho*Wo = 2^17 pixels: grad_x, grad_Q and grad_beta within SPEC's float32 1e-6
    in default and deterministic mode (float32 sums run over chunks, float64 across)."""
    r = _interp_result(workers, "misc:large_nl")
    assert r["pixels"] >= 2**17, r
    for det in ("det0", "det1"):
        for k in ("grad_input", "grad_weight", "grad_kernel_bias", "y"):
            assert r[det][k] <= TOL["float32"], (det, k, r)


@needs_triton
def test_interpreter_weight_gradients_independent_of_tile(workers):
    r = _interp_result(workers, "misc:gw_block_p")
    for mode in ("o", "uv"):
        assert r[mode]["det_equal_all_tiles"], r
        assert r[mode]["fast_one_tile_per_chunk_equals_det"], r
        for run, errs in r[mode]["errors"].items():
            assert max(errs) <= TOL["float32"], (mode, run, errs)


@needs_triton
def test_float64_is_a_clear_type_error(workers):
    r = _interp_result(workers, "misc:float64_error")
    assert r["raised"] and "float64" in r["raised"] and "native" in r["raised"] and "reference" in r["raised"]


@needs_triton
def test_cpu_without_interpreter_is_a_clear_error(workers):
    r = workers.get("host")
    assert r["dispatch_error"] and "TRITON_INTERPRET" in r["dispatch_error"], r
    assert r["available"] and "TRITON_INTERPRET" in r["available"], r
    assert r["op_cpu_error"].startswith("RuntimeError") and "TRITON_INTERPRET" in r["op_cpu_error"], r
    assert r["op_float64_error"].startswith("TypeError"), r


@needs_triton
def test_kernels_compile_for_gpus(workers):
    """Every kernel compiles to sm_80 / sm_90 cubins with its pinned configuration."""
    r = workers.get("aot")
    assert not r["failures"], "\n".join(r["failures"])
    assert len(r["kernels"]) >= 40, r["kernels"]


@needs_triton
def test_pinned_configs_do_not_spill(workers):
    r = workers.get("aot")
    spills = [k for k in r["kernels"] if k["stack"] != 0]
    assert all(k["regs"] for k in r["kernels"]), "no resource usage read from cuobjdump"
    assert not spills, f"kernels with a stack frame (register spills): {spills}"


@needs_triton
def test_16bit_kernels_use_tensor_cores_and_packed_tanh(workers):
    """The PTX of the 16-bit kernels has mma for sigma and the packed tanh the dtype has
    on that architecture (bfloat16 backward: tanh.approx.f32, see ops.tanh_form)."""
    from adaptive_conv_ext.triton import kernels as K

    r = workers.get("aot")
    checked = 0
    for k in r["kernels"]:
        if k["name"] == "col2im":
            continue
        if k["dtype"] in ("bf16", "fp16"):
            assert k["mma"], k
            want = {int(K.TANH_BF16X2): "tanh.approx.bf16x2", int(K.TANH_F16X2): "tanh.approx.f16x2",
                    int(K.TANH_F32): "tanh.approx.f32"}[k["tanh"]]
            assert k["tanh_ptx"] == [want], k
            if k["name"].startswith("fwd"):
                assert want.endswith("x2") == (k["dtype"] == "fp16" or k["arch"] >= 90), k
            checked += 1
        else:
            assert k["tanh_ptx"] == [], k  # float32: the exact tanh
    assert checked >= 20


# --------------------------------------------------------------------------- launch logic (no kernels run)


def _host_ops():
    if not _triton_installed():
        pytest.skip("triton is not installed")
    from adaptive_conv_ext.triton import ops

    return ops


def _record_launches(ops, monkeypatch):
    """Replace the kernel launch by a recorder of (kernel, programs of the grid for every
    config the kernel may run with, constexprs), so that the host logic runs on meta
    tensors of any size."""
    launches = []

    def record(name, grid, args, consts, deterministic):
        bucket = ops._bucket(consts.get("TP", 16))
        configs = [ops._INTERP[name]] + list(ops._FIXED[name]) + (
            ops._tune_configs(name, bucket) if name in ops._TUNE else [])
        programs = [grid(dict(consts, **c.kwargs)) for c in configs]
        launches.append((name, programs, consts, args))

    monkeypatch.setattr(ops, "_launch", record)
    monkeypatch.setattr(ops, "_split_count", lambda blocks, items, per_split, device: max(1, min(64, items)))
    return launches


@pytest.mark.parametrize("mode", ["o", "uv"])
def test_huge_shapes_fold_grids_and_use_int64_offsets(mode, monkeypatch):
    """A batch of 2^31+ input elements and more than 2^31 programs' worth of tiles, on
    meta tensors: every launch stays within the one-dimensional grid limit, the launches
    cover every image once, and offsets are 64-bit; a small problem keeps int32."""
    ops = _host_ops()
    monkeypatch.setattr(ops, "force_mode", mode)
    launches = _record_launches(ops, monkeypatch)
    N, C, H, O = 2**16, 64, 128, 1024  # 2^36 and 2^40 elements; 2^32+ programs per kernel
    x = torch.empty(N, C, H, H, device="meta")
    w = torch.empty(O, C, 3, 3, 3, 3, device="meta")
    kb = torch.empty(O, C, 3, 3, device="meta")
    conv = ([1, 1], [1, 1], [1, 1], 1)
    y = ops._forward(x, w, kb, None, *conv)
    assert y.shape == (N, O, H, H) and y.device.type == "meta"
    ops._backward(y, x, w, kb, *conv, [True, True])
    names = {name for name, *_ in launches}
    assert {f"fwd_{mode}", f"gin_{mode}", f"gw_{mode}"} <= names, names
    for kernel, at in ((f"fwd_{mode}", 5), (f"gin_{mode}", 6)):  # where n0, images sit in the arguments
        runs = [(args[at], args[at + 1], programs) for name, programs, consts, args in launches if name == kernel]
        assert len(runs) > 1, f"{kernel}: one launch cannot hold every program"
        assert [n0 for n0, _, _ in runs] == [sum(nb for _, nb, _ in runs[:i]) for i in range(len(runs))]
        assert sum(nb for _, nb, _ in runs) == N
    for name, programs, consts, args in launches:
        assert all(len(p) == 1 and 0 < p[0] <= 2**31 - 1 for p in programs), (name, programs)
        assert consts["IDX64"], name
    launches.clear()
    small = torch.empty(2, C, 8, 8, device="meta")
    ys = ops._forward(small, w, kb, None, *conv)
    ops._backward(ys, small, w, kb, *conv, [True, True])
    assert launches and not any(consts["IDX64"] for _, _, consts, _ in launches)


def test_launch_split_and_index_width_logic():
    ops = _host_ops()
    assert ops._image_launches(5, 10) == [(0, 5)]
    assert ops._image_launches(10, 2**29) == [(0, 3), (3, 3), (6, 3), (9, 1)]  # 3 * 2^29 < 2^31 - 1 < 4 * 2^29
    assert ops._image_launches(3, 2**30) == [(0, 1), (1, 1), (2, 1)]
    assert ops._image_launches(7, 1, max_images=3) == [(0, 3), (3, 3), (6, 1)]
    with pytest.raises(ValueError, match="programs"):
        ops._image_launches(1, 2**31)
    assert not ops._index64(2**30 - 1, 5) and ops._index64(2**30) and ops._index64(3, 2**31)


def test_meta_tensors_through_the_registered_ops():
    """The custom ops' fake implementations: shapes and dtypes without kernels."""
    ops = _host_ops()
    x = torch.empty(3, 4, 9, 7, device="meta", dtype=torch.bfloat16)
    w = torch.empty(6, 2, 3, 3, 3, 3, device="meta", dtype=torch.bfloat16)
    kb = torch.empty(6, 2, 3, 3, device="meta", dtype=torch.bfloat16)
    y = ops.forward(x, w, kb, None, [2, 1], [1, 1], [1, 1], 2)
    assert y.shape == (3, 6, 5, 7) and y.dtype == torch.bfloat16 and y.device.type == "meta"
    gi, gw, gkb = ops.backward(y, x, w, kb, [2, 1], [1, 1], [1, 1], 2, [True, True])
    assert gi.shape == x.shape and gw.shape == w.shape and gkb.shape == kb.shape
    gi, gw, gkb = ops.backward(y, x, w, None, [2, 1], [1, 1], [1, 1], 2, [False, True])
    assert gi.shape == (0,) and gw.shape == w.shape and gkb.shape == kb.shape


def test_tensors_on_different_devices_are_a_clear_error():
    ops = _host_ops()
    x = torch.empty(1, 2, 5, 5, device="meta")
    w = torch.empty(2, 2, 3, 3, 3, 3)
    with pytest.raises(RuntimeError, match="weight is on cpu but input is on meta"):
        ops._check(x, "forward", weight=w, kernel_bias=None)
    with pytest.raises(RuntimeError, match="grad_output is on cpu"):
        ops._check(x, "backward", grad_output=torch.empty(1, 2, 5, 5), weight=w.to("meta"))


# --------------------------------------------------------------------------- GPU tests

SPEC_SHAPES = [  # name, N, C, O, H=W, k, pad, groups; N_ref: images compared with the reference
    ("lenet-mnist", 256, 1, 6, 28, 5, 2, 1, 8),
    ("resnet-stem", 128, 3, 16, 32, 3, 1, 1, 4),
    ("mid-64", 32, 64, 64, 56, 3, 1, 1, 2),
    ("depthwise-256", 32, 256, 256, 56, 3, 1, 256, 2),
    ("depthwise-k7", 32, 128, 128, 28, 7, 3, 128, 2),
]


def _gpu_ops():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if not _triton_installed():
        pytest.skip("triton is not installed")
    from adaptive_conv_ext.triton import ops

    if ops.INTERPRET:
        pytest.skip("this process runs Triton under the interpreter")
    return ops


def _ref_chunk(O, groups):
    return max(1, min(O // groups, 8))


@pytest.mark.parametrize("dtype_name", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shape", SPEC_SHAPES, ids=[s[0] for s in SPEC_SHAPES])
def test_gpu_spec_shapes_match_reference(shape, dtype_name):
    """SPEC section 3 shapes with N_ref images, forward and every gradient."""
    _gpu_ops()
    name, _, C, O, HW, k, pad, groups, n_ref = shape
    dtype = getattr(torch, dtype_name)
    x, w, kb, b = make_inputs(n_ref, C, HW, HW, O, (k, k), groups, dtype, device="cuda")
    conv = (1, pad, 1, groups)
    ref = forward_backward(x, w, kb, b, conv, "reference64", out_channel_chunk=_ref_chunk(O, groups))
    out = forward_backward(x, w, kb, b, conv, "triton")
    errors = compare(out, ref)
    tol = TOL[dtype_name]
    assert all(v <= tol for v in errors.values()), errors


@pytest.mark.parametrize("shape", SPEC_SHAPES, ids=[s[0] for s in SPEC_SHAPES])
def test_gpu_spec_shapes_full_batch(shape):
    """The full SPEC batch: every output written (poisoned), y and grad_input of the
    first images equal the reference on those images (they depend on nothing else)."""
    _gpu_ops()
    name, N, C, O, HW, k, pad, groups, n_ref = shape
    x, w, kb, b = make_inputs(N, C, HW, HW, O, (k, k), groups, torch.float32, device="cuda")
    conv = (1, pad, 1, groups)
    out, again = _deterministic_twice(x, w, kb, b, conv)  # unwritten outputs would be NaN
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    assert all(torch.equal(out[k], again[k]) for k in out), "deterministic mode is not repeatable"
    fast = forward_backward(x, w, kb, b, conv, "triton")  # the atomic grad_input path
    assert rel_err(fast["grad_input"], out["grad_input"]) <= 1e-6
    assert rel_err(fast["grad_weight"], out["grad_weight"]) <= 1e-6
    xs = x[:2]
    ref = forward_backward(xs, w, kb, b, conv, "reference64", out_channel_chunk=_ref_chunk(O, groups))
    assert rel_err(out["y"][:2], ref["y"]) <= TOL["float32"]
    # grad_output is drawn for the full batch: recompute the reference's grad_input with it.
    from adaptive_conv_ext.reference import adaptive_conv2d_reference

    leaf = xs.double().requires_grad_()
    y = adaptive_conv2d_reference(leaf, w.double(), kb.double(), b.double(), *conv,
                                  out_channel_chunk=_ref_chunk(O, groups))
    go = torch.randn(out["y"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (gi,) = torch.autograd.grad(y, leaf, go[:2].to(device="cuda", dtype=torch.float32).double())
    assert rel_err(out["grad_input"][:2], gi) <= TOL["float32"]


@pytest.mark.parametrize("flag", ["tf32", "fast_tanh"])
def test_gpu_float32_fast_modes(flag, monkeypatch):
    ops = _gpu_ops()
    if flag == "tf32":
        monkeypatch.setattr(ops, "allow_tf32", True)
    else:
        monkeypatch.setattr(ops, "fast_tanh", "1")
    x, w, kb, b = make_inputs(4, 16, 20, 20, 32, (3, 3), 1, torch.float32, device="cuda")
    ref = forward_backward(x, w, kb, b, (1, 1, 1, 1), "reference64")
    out = forward_backward(x, w, kb, b, (1, 1, 1, 1), "triton")
    errors = compare(out, ref)
    assert all(v <= TOL_FAST for v in errors.values()), errors


@pytest.mark.parametrize("mode", ["o", "uv"])
def test_gpu_geometries(mode, monkeypatch):
    ops = _gpu_ops()
    monkeypatch.setattr(ops, "force_mode", mode)
    for geo in GEOMETRIES:
        _, N, C, H, W, O, k, stride, padding, dilation, groups, has_kb, has_b = geo
        x, w, kb, b = make_inputs(N, C, H, W, O, k, groups, torch.float32, device="cuda", kb=has_kb, bias=has_b)
        conv = (stride, padding, dilation, groups)
        errors = compare(forward_backward(x, w, kb, b, conv, "triton"),
                         forward_backward(x, w, kb, b, conv, "reference64"))
        assert all(v <= TOL["float32"] for v in errors.values()), (geo, errors)


def test_gpu_torch_compile():
    _gpu_ops()
    from adaptive_conv_ext import adaptive_conv2d

    x, w, kb, b = make_inputs(2, 8, 12, 12, 16, (3, 3), 1, torch.float32, device="cuda")
    eager = forward_backward(x, w, kb, b, (1, 1, 1, 1), "triton")
    compiled = torch.compile(lambda *t: adaptive_conv2d(*t, 1, 1, 1, 1, backend="triton"), fullgraph=True)
    leaves = [t.clone().requires_grad_() for t in (x, w, kb, b)]
    y = compiled(*leaves)
    go = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(y)
    grads = torch.autograd.grad(y, leaves, go)
    errors = compare(dict(zip(OUTPUTS, [y, *grads])), eager)
    assert all(v <= 1e-6 for v in errors.values()), errors


def test_gpu_auto_uses_triton_without_native_cuda():
    _gpu_ops()
    from adaptive_conv_ext import _backends

    if _backends.native_unavailable_reason(torch.device("cuda")) is None:
        pytest.skip("the native CUDA build is present, so auto picks it")
    assert _backends.resolve("auto", torch.device("cuda")) == "triton"


# --------------------------------------------------------------------------- worker entry

if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        name = sys.argv[2]
        if name.startswith("interp"):
            result = _worker_interp(name)
        elif name == "aot":
            result = _worker_aot(full=os.environ.get("ADAPTIVE_CONV_AOT_FULL") == "1")
        elif name == "host":
            result = _worker_host()
        else:
            raise SystemExit(f"unknown worker {name}")
        print("RESULT " + json.dumps(result))
    else:
        raise SystemExit("usage: python tests/test_triton.py --worker NAME (pytest runs the tests)")
