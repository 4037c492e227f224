"""`python -m benchmarks.ab_builds OLD_DIR NEW_DIR`: the native CPU kernels of two builds
of the package (each a folder holding an importable adaptive_conv_ext, e.g. a checkout
or a copy of one), timed alternately in one run on every SPEC shape: float32, torch's
threads, forward and forward+backward with the gradients SPEC section 3 trains with;
% of the floor (one-thread sgemm rate x threads, sampled in the same run). Each build
runs in its own process, so that its own Python layer and libraries are the ones used."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, statistics, torch
import adaptive_conv_ext as a
from benchmarks.shapes import SHAPES
from benchmarks.impls import make_inputs
name, reps = sys.argv[1], int(sys.argv[2])
s = SHAPES[name]; n = s.cpu_N
inp = make_inputs(s, n, torch.float32, "cpu", input_grad=s.input_grad)
args = (inp["x"], inp["weight"], inp["kernel_bias"], inp["bias"], 1, s.pad, 1, s.groups)
def fwd():
    with torch.no_grad():
        a.adaptive_conv2d(*args, backend="native")
leaves = [t for t in (inp["x"], inp["weight"], inp["kernel_bias"], inp["bias"]) if t.requires_grad]
def fb():
    for t in leaves: t.grad = None
    a.adaptive_conv2d(*args, backend="native").backward(inp["grad_out"])
out = {"module": a.__file__}
for key, fn in (("fwd_s", fwd), ("fwdbwd_s", fb)):
    fn(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    out[key] = statistics.median(ts)
print(json.dumps(out))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json")
    p.add_argument("--shapes", nargs="+", help="SPEC shape names (default: all)")
    args = p.parse_args(argv)
    import torch

    from . import cpu_floor
    from .shapes import SPEC_SHAPES

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rate = cpu_floor.CpuRate()
    rows = []
    for shape in [s for s in SPEC_SHAPES if not args.shapes or s.name in args.shapes]:
        times = {"old": [], "new": []}
        for r in range(args.rounds):
            for label in (("old", "new") if r % 2 == 0 else ("new", "old")):
                # the build's package first; this checkout second, for benchmarks.*
                env = dict(os.environ, PYTHONPATH=os.pathsep.join([getattr(args, label), root]))
                out = subprocess.run([sys.executable, "-c", CHILD, shape.name, str(args.reps)], env=env,
                                     capture_output=True, text=True, cwd="/")
                if out.returncode != 0:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                times[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
            rate.sample()
        floor = rate.case_floor(shape, shape.cpu_N, shape.input_grad)
        row = {"shape": shape.name, "N": shape.cpu_N, "input_grad": shape.input_grad}
        for label in ("old", "new"):
            for key in ("fwd_s", "fwdbwd_s"):
                best = min(t[key] for t in times[label])
                row[f"{label}_{key}"] = best
                row[f"{label}_{key}_pct_floor"] = 100 * floor[key] / best
                if floor.get("fma_peak"):
                    row[f"{label}_{key}_pct_peak"] = 100 * floor["fma_peak"][key] / best
        rows.append(row)
        print(f"{shape.name:14s} fwd {row['old_fwd_s']*1e3:8.1f} -> {row['new_fwd_s']*1e3:8.1f} ms "
              f"({row['old_fwd_s_pct_floor']:5.1f}% -> {row['new_fwd_s_pct_floor']:5.1f}% of floor)   "
              f"f+b {row['old_fwdbwd_s']*1e3:8.1f} -> {row['new_fwdbwd_s']*1e3:8.1f} ms "
              f"({row['old_fwdbwd_s_pct_floor']:5.1f}% -> {row['new_fwdbwd_s_pct_floor']:5.1f}%)", flush=True)
        if floor.get("fma_peak"):
            print(f"{'':14s} % of FMA peak: fwd {row['old_fwd_s_pct_peak']:5.1f}% -> {row['new_fwd_s_pct_peak']:5.1f}%"
                  f"   f+b {row['old_fwdbwd_s_pct_peak']:5.1f}% -> {row['new_fwdbwd_s_pct_peak']:5.1f}%", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "cpu": cpu_floor.cpu_model(), "load_avg": os.getloadavg(), "floor": rate.info(), "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
