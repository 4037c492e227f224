"""onnxruntime (CPU provider) against the native CPU kernel, on SPEC shapes.

    python -m benchmarks.onnx_runtime [--reps 20] [--threads 2] [--shapes resnet-stem depthwise-256] [--out DIR]

For each shape (N scaled down for a CPU, as SPEC section 3 allows) it exports one
AdaptiveConv2d layer with ``torch.onnx.export(..., dynamo=True)`` (the formulation the
package registers, adaptive_conv_ext/_onnx.py), plus alternative standard-op
formulations of the same operator written here, runs each in onnxruntime and compares
its forward time with the native kernel's in the same process, on the same input (each
warmed up, medians of --reps calls, the same number of threads). Writes JSON + markdown
into --out (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict

import torch
import torch.nn.functional as F

import adaptive_conv_ext
from adaptive_conv_ext._onnx import adaptive_conv2d_standard_ops, generator_filters, one_hot_taps
from adaptive_conv_ext.reference import adaptive_conv2d_reference

from .shapes import SPEC_SHAPES


# ----------------------------------------------------------- alternative formulations
# Same operator, same arguments as adaptive_conv2d_standard_ops; only the ONNX graph differs.


def _sizes(x, weight, groups):
    O, Cg, kH, kW = weight.shape[:4]
    return x.shape[0], x.shape[1], Cg, O // groups, kH, kW, kH * kW


def two_axis_sum(x, weight, kernel_bias, bias, stride, padding, dilation, groups):
    """sigma's channels ordered (c', o, (u,v)): the final ReduceSum runs over two separate axes."""
    N, C, Cg, Og, kH, kW, T = _sizes(x, weight, groups)
    q = weight.reshape(groups, Og, Cg, T, kH, kW).transpose(1, 2).reshape(-1, 1, kH, kW)
    beta = None if kernel_bias is None else kernel_bias.reshape(groups, Og, Cg, T).transpose(1, 2).reshape(-1)
    taps = one_hot_taps(x, kH, kW, stride, padding, dilation)
    sigma = F.conv2d(x, q, beta, stride, padding, dilation, groups=C)
    Ho, Wo = taps.shape[2:]
    K = torch.tanh(sigma).reshape(N, groups, Cg, Og, T, Ho * Wo)
    y = (K * taps.reshape(N, groups, Cg, 1, T, Ho * Wo)).sum(dim=(2, 4)).reshape(N, -1, Ho, Wo)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def _contract(sigma, taps, bias, N, groups, Cg, Og, T, Ho, Wo):
    K = torch.tanh(sigma).reshape(N, groups, Cg * T, Og, Ho * Wo)
    y = (K * taps.reshape(N, groups, Cg * T, 1, Ho * Wo)).sum(2).reshape(N, -1, Ho, Wo)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def slice_taps(x, weight, kernel_bias, bias, stride, padding, dilation, groups):
    """Taps as kH*kW strided slices of the zero-padded input instead of a one-hot Conv."""
    N, C, Cg, Og, kH, kW, T = _sizes(x, weight, groups)
    q, beta = generator_filters(weight, kernel_bias, groups)
    sigma = F.conv2d(x, q, beta, stride, padding, dilation, groups=C)
    Ho, Wo = sigma.shape[2:]
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    (sH, sW), (dH, dW) = stride, dilation
    taps = torch.stack(
        [xp[:, :, a * dH: a * dH + (Ho - 1) * sH + 1: sH, b * dW: b * dW + (Wo - 1) * sW + 1: sW]
         for a in range(kH) for b in range(kW)],
        dim=2,
    )
    return _contract(sigma, taps, bias, N, groups, Cg, Og, T, Ho, Wo)


def matmul_sigma(x, weight, kernel_bias, bias, stride, padding, dilation, groups):
    """sigma as a MatMul of Q (batched over channels) with the one-hot-Conv taps."""
    N, C, Cg, Og, kH, kW, T = _sizes(x, weight, groups)
    q, beta = generator_filters(weight, kernel_bias, groups)
    taps = one_hot_taps(x, kH, kW, stride, padding, dilation)
    Ho, Wo = taps.shape[2:]
    sigma = torch.matmul(q.reshape(C, T * Og, T), taps.reshape(N, C, T, Ho * Wo))
    if beta is not None:
        sigma = sigma + beta.reshape(C, T * Og, 1)
    return _contract(sigma, taps, bias, N, groups, Cg, Og, T, Ho, Wo)


FORMULATIONS: Dict[str, Callable] = {
    "registered: Conv taps, Conv sigma, one-axis ReduceSum": adaptive_conv2d_standard_ops,
    "two-axis ReduceSum": two_axis_sum,
    "Slice taps": slice_taps,
    "MatMul sigma": matmul_sigma,
}


class _Layer(torch.nn.Module):
    def __init__(self, fn, layer):
        super().__init__()
        self.fn, self.layer = fn, layer

    def forward(self, x):
        m = self.layer
        return self.fn(x, m.weight, m.kernel_bias, m.bias, m.stride, m.padding, m.dilation, m.groups)


def _interleaved_medians(calls: Dict[str, Callable], reps: int, warmup: int = 3) -> Dict[str, float]:
    """Median seconds per call of each callable, timed in turn within each repetition so
    that a change in the machine's load (shared CPUs) hits all of them alike."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: Dict[str, list] = {name: [] for name in calls}
    for _ in range(reps):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def _rel(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return ((a - b).norm() / b.norm()).item()


def run(shape_names, reps, threads):
    import onnxruntime as ort

    torch.set_num_threads(threads)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    results = []
    for shape in [s for s in SPEC_SHAPES if s.name in shape_names]:
        n = shape.cpu_N
        torch.manual_seed(0)
        layer = adaptive_conv_ext.AdaptiveConv2d(
            shape.C, shape.O, shape.k, padding=shape.pad, groups=shape.groups
        ).eval()
        x = torch.randn(n, shape.C, shape.H, shape.W)
        with torch.no_grad():
            ref = adaptive_conv2d_reference(
                x.double(), layer.weight.double(), layer.kernel_bias.double(), layer.bias.double(),
                layer.stride, layer.padding, layer.dilation, layer.groups,
            )
            native = layer(x)
        sessions, outputs, ops = {}, {}, {}
        for name, fn in FORMULATIONS.items():
            buf = io.BytesIO()
            module = layer if fn is adaptive_conv2d_standard_ops else _Layer(fn, layer).eval()
            with torch.no_grad():
                program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
            program.save(buf)
            sessions[name] = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
            ops[name] = sorted({node.op_type for node in program.model_proto.graph.node})
        calls = {name: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x.numpy()})) for name, s in sessions.items()}
        outputs = {name: call()[0] for name, call in calls.items()}

        def run_native():
            with torch.no_grad():
                layer(x)

        medians = _interleaved_medians({"native": run_native, **calls}, reps)
        t_native = medians["native"]
        row = {"shape": shape.name, "N": n, **shape.dims(), "native_s": t_native,
               "native_rel_err": _rel(native, ref), "onnx": {}}
        for name in FORMULATIONS:
            t, out = medians[name], outputs[name]
            row["onnx"][name] = {"ort_s": t, "ratio_to_native": t / t_native,
                                 "rel_err_vs_native": _rel(out, native), "rel_err_vs_float64": _rel(out, ref),
                                 "max_abs_err_over_max_abs_native": (torch.from_numpy(out) - native).abs().max().item()
                                 / native.abs().max().item(),
                                 "ops": ops[name]}
            print(f"{shape.name} N={n}: {name:55s} ort {t * 1e3:9.2f} ms  native {t_native * 1e3:8.2f} ms  "
                  f"x{t / t_native:6.2f}  err {_rel(out, ref):.1e}  ops {ops[name]}", flush=True)
        del sessions, calls
        results.append(row)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--shapes", nargs="+", default=["resnet-stem", "depthwise-256"])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"),
                        help="directory for the JSON and markdown (created if missing)")
    args = parser.parse_args(argv)
    import onnx
    import onnxruntime

    results = run(args.shapes, args.reps, args.threads)
    meta = {
        "device": platform.processor() or platform.machine(), "threads": args.threads, "reps": args.reps,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "dtype": "float32", "what": "forward only, median seconds per call",
    }
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f"cpu_{stamp}_onnxruntime")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    lines = [f"# onnxruntime CPU vs native CPU kernel (float32 forward, {args.threads} threads, "
             f"median of {args.reps})", "", f"{meta['date']}, {meta['versions']}", "",
             "| shape | N | formulation | onnxruntime | native | onnxruntime / native | rel. err vs float64 "
             "| rel. err vs native | ONNX ops |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name, o in r["onnx"].items():
            lines.append(f"| {r['shape']} | {r['N']} | {name} | {o['ort_s'] * 1e3:.2f} ms | "
                         f"{r['native_s'] * 1e3:.2f} ms | {o['ratio_to_native']:.2f} | {o['rel_err_vs_float64']:.1e} "
                         f"| {o['rel_err_vs_native']:.1e} | {', '.join(o['ops'])} |")
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {base}.json and .md")


if __name__ == "__main__":
    main()
