"""The benchmark suite: `python -m benchmarks` (SPEC sections 3 and 4).

Every implementation runs one after the other in this process on the same inputs,
warmed up first; medians of --reps repetitions, forward alone (no autograd graph)
and forward+backward with the gradients training needs (SPEC section 3: a first
layer's without the input's gradient, then again with all gradients, labelled); peak
memory above the inputs (GPU: max_memory_allocated; CPU: peak RSS of a child process
per implementation); the fused times as a percentage of the SPEC floor (GPU: floors.py;
CPU: cpu_floor.py, measured in the same run). The table warns when the load average
exceeded the cores the run used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from . import impls as I
from . import report
from .cpu_floor import cpu_model, percentages
from .measure import Options, bench_impl, is_oom, short
from .shapes import DEFAULT_SHAPES, QUICK_SHAPES, SHAPES

# Untracked (.gitignore): a run never overwrites the committed reference results in
# benchmarks/results/ unless asked to with --out benchmarks/results.
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
QUICK_BACKENDS = [i for i in I.IMPLS if i != "compiled"]  # a cold torch.compile costs ~30 s per shape on 2 cores


def _csv(text: str) -> List[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def gpu_triton(device: str) -> bool:
    return device == "cuda" and I.unavailable_reason("triton", None, device) is None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", help=f"comma-separated, from: {', '.join(SHAPES)}; 'all' = every SPEC shape "
                   f"(default: all; with --quick: {','.join(QUICK_SHAPES)})")
    p.add_argument("--backends", help=f"comma-separated, from: {', '.join(I.IMPLS)} "
                   "(default: all that can run on the device; with --quick also not compiled)")
    p.add_argument("--dtypes", default="float32", help="comma-separated: float32, float16, bfloat16 (GPU), float64")
    p.add_argument("--quick", action="store_true",
                   help="smoke run for CI: N=1, 3 reps, 1 warm-up, 10 s budget; the fewer reps are recorded")
    p.add_argument("--reps", type=int, help="timed repetitions (default 20; --quick 3)")
    p.add_argument("--warmup", type=int, help="warm-up calls (default 1 on CPU, 5 on GPU; compile gets >= 2)")
    p.add_argument("--budget", type=float, help="seconds of timed repetitions per implementation and case; "
                   "fewer reps (never below --min-reps) or 'skipped' beyond it (default CPU 120, GPU 60, quick 10)")
    p.add_argument("--min-reps", type=int, help="default 5 (--quick 1)")
    p.add_argument("--batch", type=int, default=0, help="force this N for every shape (default: per shape and device)")
    p.add_argument("--out", default=str(RESULTS_DIR),
                   help="directory for the JSON, PNG and markdown (default: results/, untracked; the committed "
                   "reference results are benchmarks/results/)")
    p.add_argument("--tag", default="", help="appended to the output file names")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--mem-cap-mb", type=int, default=0,
                   help="CPU: limit each memory child to this many MiB above its inputs; more is recorded as oom")
    p.add_argument("--overhead", action="store_true",
                   help="CPU: also break the per-call cost down against F.conv2d's at the same size "
                   "(benchmarks/overhead.py: 1x1x1x1 and each --shapes at --batch, default 1)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--floors", action="store_true",
                   help="no benchmark run: print the static model's expected %% of the floor per SPEC shape and "
                   "dtype on sm_90 from the kernels' SASS (benchmarks/floor_report.py; needs nvcc and cuobjdump)")
    p.add_argument("--sass-obj", action="append", default=[],
                   help="with --floors: an sm_90 object of the CUDA kernels to read (repeat; default: build them)")
    p.add_argument("--sass-cache", help="with --floors: where the built objects are cached (default build/sass_model)")
    p.add_argument("--json", help="with --floors: also write the rows (kernels, %% of floor) as JSON to this path")
    args = p.parse_args(argv)
    if args.floors:
        return args

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.overhead and args.device != "cpu":
        p.error("--overhead: the breakdown runs on the CPU only (use --device cpu)")
    args.shapes = _csv(args.shapes) if args.shapes else (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    if args.shapes == ["all"]:
        args.shapes = DEFAULT_SHAPES
    if args.backends:
        args.backends = _csv(args.backends)
    else:
        args.backends = QUICK_BACKENDS if args.quick else list(I.IMPLS)
        if not gpu_triton(args.device):  # Triton runs on GPUs only: not worth a row of 'skipped'
            args.backends = [b for b in args.backends if b != "triton"]
    args.dtypes = _csv(args.dtypes)
    for name, choices, vals in (("shape", SHAPES, args.shapes), ("backend", I.IMPLS, args.backends),
                                ("dtype", I.DTYPES, args.dtypes)):
        bad = [v for v in vals if v not in choices]
        if bad:
            p.error(f"unknown {name} {bad}; choose from {', '.join(choices)}")
    gpu = args.device == "cuda"
    if args.reps is None:
        args.reps = 3 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick or not gpu else 5
    if args.budget is None:
        args.budget = 10.0 if args.quick else 60.0 if gpu else 120.0
    if args.min_reps is None:
        args.min_reps = 1 if args.quick else 5
    args.min_reps = min(args.min_reps, args.reps)
    return args


# ---------------------------------------------------------------- environment

def _git(*cmd) -> Optional[str]:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> Tuple[dict, dict]:
    import adaptive_conv_ext

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "adaptive_conv_ext": adaptive_conv_ext.__version__,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }
    dev = {
        "type": device,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    dev["name"] = torch.cuda.get_device_name() if device == "cuda" else dev["cpu_model"]
    return dev, versions


def _load1() -> Optional[float]:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40]


# ---------------------------------------------------------------- the run

def _finish_case(case: dict, outputs: dict, floor: Optional[dict]) -> None:
    """Ratios to native, cross-check of outputs against the reference, % of floor."""
    by = {r["impl"]: r for r in case["results"]}
    nat = by.get("native")
    nat = nat if nat and nat["status"] == "ok" else None
    ref_name = "reference" if "reference" in outputs else "native" if "native" in outputs else None
    ref = outputs.get(ref_name)
    for r in case["results"]:
        if r["status"] != "ok":
            continue
        if nat:
            r["ratio_fwd"] = r["fwd_s"] / nat["fwd_s"]
            r["ratio_fwdbwd"] = r["fwdbwd_s"] / nat["fwdbwd_s"]
            m, mn = r.get("memory") or {}, nat.get("memory") or {}
            if m.get("status") == "ok" and mn.get("status") == "ok" and mn["fwdbwd_bytes"] > 0:
                r["mem_ratio_fwd"] = m["fwd_bytes"] / mn["fwd_bytes"] if mn["fwd_bytes"] > 0 else None
                r["mem_ratio_fwdbwd"] = m["fwdbwd_bytes"] / mn["fwdbwd_bytes"]
        out = outputs.get(r["impl"])
        if ref is not None and out is not None and r["impl"] not in ("conv2d", ref_name):
            a, b = out.double(), ref.double()
            r["rel_err"] = float((a - b).norm() / b.norm().clamp_min(1e-300))
            r["rel_err_vs"] = ref_name
        if floor and r["impl"] in I.FUSED:
            r.update(percentages(floor, r))


def _gpu_floor(shape, n: int, dtype: torch.dtype, gpu: dict, input_grad: bool) -> Optional[dict]:
    """floors.py's floor of the case (without dX when the input needs no gradient), with
    the rates it used; None where it has none."""
    from . import floors

    rates = floors.peak_rates(gpu, dtype)
    floor = floors.case_floor(shape, n, dtype, rates, gpu["bandwidth_Bps"], input_grad=input_grad)
    return floor and {**floor, "rates": rates}


def run(argv=None) -> Tuple[dict, dict]:
    """Run the suite; returns (results, {kind: path written})."""
    args = parse_args(argv)
    from tqdm import tqdm

    dev, versions = environment(args.device)
    opts = Options(device=args.device, reps=args.reps, min_reps=args.min_reps, warmup=args.warmup,
                   budget_s=args.budget, memory=not args.no_memory, mem_cap_mb=args.mem_cap_mb)
    gpu_floor = None
    if args.device == "cuda":
        from . import floors

        gpu_floor = floors.gpu_info()
        gpu_floor["bandwidth_Bps"] = floors.measure_bandwidth()
        dev["gpu"] = gpu_floor
    cpu_rate = None
    if args.device == "cpu":
        from .cpu_floor import CpuRate

        cpu_rate = CpuRate()  # the sgemm rate, sampled again before every case
    started = datetime.datetime.now().astimezone()
    results = {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "device": dev,
        "versions": versions,
        "settings": {
            "quick": args.quick, "reps": args.reps, "min_reps": args.min_reps, "warmup": args.warmup,
            "budget_s": args.budget, "shapes": args.shapes, "backends": args.backends, "dtypes": args.dtypes,
            "batch_override": args.batch or None, "overhead": args.overhead, "memory": not args.no_memory,
            "mem_cap_mb": args.mem_cap_mb,
            "timer": "CUDA events" if args.device == "cuda" else "time.perf_counter",
            "forward": "under torch.no_grad()",
            "forward+backward": "the gradients SPEC section 3 says training needs; first layers also with all",
            "statistic": "median",
        },
        "cases": [],
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{args.device}-{_slug(dev['name'])}_{started:%Y%m%d-%H%M%S}" + ("_quick" if args.quick else "") + \
        (f"_{_slug(args.tag)}" if args.tag else "")
    paths = {"json": str(out_dir / f"{stem}.json"), "md": str(out_dir / f"{stem}.md")}
    cases = [(name, input_grad, grads) for name in args.shapes for input_grad, grads in SHAPES[name].grad_variants()]
    tasks = len(args.dtypes) * len(cases) * len(args.backends)
    bar = tqdm(total=tasks, desc="benchmarks", unit="run", file=sys.stderr, disable=args.no_progress,
               dynamic_ncols=True)
    t_start = time.perf_counter()
    for dtype_name in args.dtypes:
        dtype = I.DTYPES[dtype_name]
        for shape_name, input_grad, grads in cases:
            shape = SHAPES[shape_name]
            n = shape.batch(args.device, args.quick, args.batch)
            case = {"name": shape.name, "source": shape.source, "shape": shape.dims(), "N": n, "N_spec": shape.N,
                    "dtype": dtype_name, "Ho": shape.out_size(), "Wo": shape.out_size(),
                    "input_grad": input_grad, "grads": grads,
                    "tanh_evals_fwd": shape.tanh_evals(n), "results": [],
                    # a shared machine's load during the case, to judge its noise by
                    "loadavg_1min_start": _load1()}
            floor = None
            if gpu_floor:
                floor = _gpu_floor(shape, n, dtype, gpu_floor, input_grad)
                case["floor"] = floor
            elif cpu_rate:
                case["sgemm_1thread_flops"] = cpu_rate.sample()
                floor = case["floor"] = cpu_rate.case_floor(shape, n, input_grad)
            outputs = {}
            try:
                inp = I.make_inputs(shape, n, dtype, args.device, input_grad=input_grad)
            except Exception as exc:  # noqa: BLE001 - every implementation of the case records it
                inp, why = None, ("oom" if is_oom(exc) else "error", short(exc))
            for impl in args.backends:
                bar.set_description(f"{shape.name} {dtype_name}{' ' + grads if grads else ''} {impl}")
                if inp is None:
                    r = {"impl": impl, "label": I.LABELS[impl], "status": why[0],
                         "reason": f"creating the inputs failed: {why[1]}"}
                else:
                    for t in inp.values():
                        t.grad = None
                    t0 = time.perf_counter()
                    r = bench_impl(impl, shape, n, dtype_name, inp, opts)
                    r["bench_wall_s"] = time.perf_counter() - t0  # all of it: child, warm-up, reps
                out = r.pop("_output", None)
                if out is not None:
                    outputs[impl] = out
                case["results"].append(r)
                bar.update(1)
            case["loadavg_1min_end"] = _load1()
            _finish_case(case, outputs, floor)
            results["cases"].append(case)
            write_json(paths["json"], results)  # after every case: a run cut short keeps what it finished
            del inp, outputs
    bar.close()
    if args.overhead:
        from . import overhead

        results["overhead"] = overhead.measure(args.shapes, args.batch or 1)
    results["wall_s"] = time.perf_counter() - t_start
    dev["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if cpu_rate:
        dev["cpu_floor"] = cpu_rate.info()
        cpu_rate.rebase(results["cases"])  # every case against the fastest rate of the whole run

    results["complete"] = True
    write_json(paths["json"], results)
    warning = report.load_warning(results)
    with open(paths["md"], "w") as f:
        f.write(header_md(results) + "\n\n" + (f"**{warning}**\n\n" if warning else "")
                + report.floor_summary_md(results) + report.markdown_table(results) + "\n")
        if "overhead" in results:
            f.write("\n### Per-call overhead (benchmarks/overhead.py)\n\n" + _overhead_md(results) + "\n")
    if not args.no_plot:
        from .plot import plot

        paths["png"] = str(out_dir / f"{stem}.png")
        plot(results, paths["png"])
    print(report.text_table(results))
    if "overhead" in results:
        print("\n" + _overhead_md(results))
    if warning:
        print("\n" + warning)
    print(f"\n{len(results['cases'])} cases in {results['wall_s']:.0f} s; wrote " + ", ".join(paths.values()))
    return results, paths


def _overhead_md(results: dict) -> str:
    from . import overhead

    return overhead.markdown({"this build": results["overhead"]})


def write_json(path: str, results: dict) -> None:
    """Writes the results so far ("complete": false until the last case), atomically:
    the file on disk is always whole JSON, even if the run is killed mid-write."""
    results.setdefault("complete", False)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def header_md(results: dict) -> str:
    d, v, s = results["device"], results["versions"], results["settings"]
    threads = f", {d['torch_threads']} torch threads" if d["type"] == "cpu" else ""
    reps = f"medians of {s['reps']} reps" + (" (--quick)" if s["quick"] else "")
    return (f"Machine: {d['name']} ({d['type']}{threads}); torch {v['torch']}, triton {v['triton']}, "
            f"Python {v['python']}; {results['date']}; {reps}, forward under no_grad; "
            f"peak memory above the inputs ({'child process RSS' if d['type'] == 'cpu' else 'max_memory_allocated'}).")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.floors:
        from . import floor_report

        return floor_report.main(args.sass_obj, args.sass_cache, args.json)
    run(argv)
    return 0
