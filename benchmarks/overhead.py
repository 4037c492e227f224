"""Per-call cost of one small adaptive_conv2d, broken down, against F.conv2d's own cost at
the same size (issue 27 item 5): the batch-1 latency run's breakdown.

    python -m benchmarks --device cpu --batch 1 --shapes lenet-mnist --backends native --overhead
    python -m benchmarks.overhead --vs OLD_DIR     # this checkout and another build, alternately

Problems: 1x1x1x1 (C = O = H = W = k = 1: nothing to compute, so all of it is overhead)
and each requested SPEC shape at batch N (default 1). Every call is timed in a loop of
many calls (microseconds per call, median of rounds; the items take turns within each
round, so a noisy moment hits all of them), forward only, under torch.no_grad() unless
the row says grad mode, with torch's threads as the suite runs them.

Rows: the public calls (functional and module) against F.conv2d / nn.Conv2d; the direct
operator call (torch.ops.adaptive_conv_ext.*, through its Python Autograd kernel); the
operator below autograd (C++ only: dispatcher, stable-ABI boxing, glue, kernel); and each
Python layer of the public call timed alone (validation, backend choice, memory format,
the autograd.Function wrapper, the plan lookup where the build has one). The kernel's
share is estimated as the operator's time at the shape less its time at 1x1x1x1.
A row a build does not have (an older one) is left empty.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from .cpu_floor import cpu_model

# (row key, label); the order of the table.
ROWS = [
    ("F.conv2d", "F.conv2d (functional)"),
    ("public", "adaptive_conv2d (public functional)"),
    ("nn.Conv2d", "nn.Conv2d (module)"),
    ("module", "AdaptiveConv2d (module)"),
    ("F.conv2d grad", "F.conv2d, grad mode (parameters require grad)"),
    ("public grad", "adaptive_conv2d, grad mode (parameters require grad)"),
    ("direct op", "torch.ops.adaptive_conv_ext.adaptive_conv2d_forward (Python Autograd kernel)"),
    ("op below autograd", "the operator below autograd: dispatcher + stable-ABI boxing + C++ glue + kernel"),
    ("kernel", "  of which the kernel (estimate: this shape less 1x1x1x1)"),
    ("validate", "  Python: _validation.validate"),
    ("resolve", "  Python: _backends.resolve (backend choice)"),
    ("memory format", "  Python: output memory format (suggest_memory_format x2)"),
    ("Function.apply", "  Python: AdaptiveConv2dFunction.apply less the direct op call in its forward"),
    ("plan lookup", "  Python: plan lookup (_plan_key + dict) of a repeated call"),
    ("below-autograd guard", "  Python: torch._C._AutoDispatchBelowAutograd() enter + exit"),
]
# Rows compared with F.conv2d's / nn.Conv2d's own time at the same size.
VERSUS = {"public": "F.conv2d", "module": "nn.Conv2d", "public grad": "F.conv2d grad", "direct op": "F.conv2d",
          "op below autograd": "F.conv2d"}
ONE_BY_ONE = "1x1x1x1"
GRAD_MODE = {"F.conv2d grad", "public grad"}  # the rows timed with grad mode on; the others under no_grad


def _problem(name: str, n: int):
    """(x, weight, kernel_bias, bias, conv weight, padding, groups) of a problem."""
    from .shapes import SHAPES

    if name == ONE_BY_ONE:
        C = O = H = k = groups = 1
        pad = 0
    else:
        s = SHAPES[name]
        C, O, H, k, pad, groups = s.C, s.O, s.H, s.k, s.pad, s.groups
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, C, H, H, generator=g)
    weight = torch.randn(O, C // groups, k, k, k, k, generator=g) * 0.1
    kernel_bias = torch.randn(O, C // groups, k, k, generator=g) * 0.1
    bias = torch.randn(O, generator=g)
    return x, weight, kernel_bias, bias, torch.randn(O, C // groups, k, k, generator=g), pad, groups


def _calls(name: str, n: int) -> Dict[str, Callable[[], object]]:
    """The timed calls of one problem: {row key: call}; rows this build lacks are absent."""
    import adaptive_conv_ext as ace
    from adaptive_conv_ext import _backends, _validation, functional

    x, w, kb, b, w2d, pad, groups = _problem(name, n)
    C, O, k = x.shape[1], w.shape[0], w.shape[2]
    module = ace.AdaptiveConv2d(C, O, k, padding=pad, groups=groups)
    conv = torch.nn.Conv2d(C, O, k, padding=pad, groups=groups)
    for layer in (module, conv):
        layer.requires_grad_(False)
    params = [t.clone().requires_grad_() for t in (w, kb, b)]
    w2d_grad, b_grad = w2d.clone().requires_grad_(), b.clone().requires_grad_()
    op = torch.ops.adaptive_conv_ext.adaptive_conv2d_forward.default
    geometry = ((1, 1), (pad, pad), (1, 1), groups)

    def below_autograd():
        with torch._C._AutoDispatchBelowAutograd():
            return op(x, w, kb, b, *geometry)

    calls = {  # timed under torch.no_grad(), entered once around each round's loop
        "F.conv2d": lambda: F.conv2d(x, w2d, b, 1, pad, 1, groups),
        "public": lambda: ace.adaptive_conv2d(x, w, kb, b, 1, pad, 1, groups),
        "nn.Conv2d": lambda: conv(x),
        "module": lambda: module(x),
        "F.conv2d grad": lambda: F.conv2d(x, w2d_grad, b_grad, 1, pad, 1, groups),
        "public grad": lambda: ace.adaptive_conv2d(x, *params, 1, pad, 1, groups),
        "direct op": lambda: op(x, w, kb, b, *geometry),
        "op below autograd": below_autograd,
        "validate": lambda: _validation.validate(x, w, kb, b, 1, pad, 1, groups),
        "resolve": lambda: _backends.resolve("auto", x.device, x.dtype),
        "Function.apply": lambda: functional.AdaptiveConv2dFunction.apply(x, w, kb, b, *geometry, "native"),
    }
    y = below_autograd()
    from torch._prims_common import suggest_memory_format

    calls["memory format"] = lambda: suggest_memory_format(y) != suggest_memory_format(x)
    plan_key = getattr(functional, "_plan_key", None)
    if plan_key is not None:
        plans = functional._PLANS
        calls["plan lookup"] = lambda: plans.get(plan_key(x, w, kb, b, 1, pad, 1, groups, "auto", "zeros"))

    def guard():
        with torch._C._AutoDispatchBelowAutograd():
            pass

    calls["below-autograd guard"] = guard
    return calls


def _per_call_us(key: str, call: Callable[[], object], number: int) -> float:
    with torch.set_grad_enabled(key in GRAD_MODE):
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        return (time.perf_counter() - t0) / number * 1e6


def measure(shapes: List[str], n: int = 1, rounds: int = 15, round_s: float = 0.02) -> dict:
    """{"problems": {problem: {row: microseconds per call}}, ...} for this process's build."""
    import adaptive_conv_ext

    problems = {}
    for name in [ONE_BY_ONE] + list(shapes):
        calls = _calls(name, 1 if name == ONE_BY_ONE else n)
        numbers = {}
        for key, call in calls.items():  # warm-up (plans, allocator), then calls per round
            _per_call_us(key, call, 20)
            numbers[key] = max(1, int(round_s / max(_per_call_us(key, call, 20) * 1e-6, 1e-9)))
        samples: Dict[str, List[float]] = {key: [] for key in calls}
        for r in range(rounds):
            keys = list(calls) if r % 2 == 0 else list(reversed(calls))
            for key in keys:
                samples[key].append(_per_call_us(key, calls[key], numbers[key]))
        problems[name] = {key: statistics.median(v) for key, v in samples.items()}
        problems[name]["_min"] = {key: min(v) for key, v in samples.items()}
    one = problems[ONE_BY_ONE]
    for name, row in problems.items():
        row["Function.apply"] -= row["direct op"]
        if name != ONE_BY_ONE:
            row["kernel"] = row["op below autograd"] - one["op below autograd"]
    return {
        "module": adaptive_conv_ext.__file__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_model(),
        "batch": n,
        "rounds": rounds,
        "problems": problems,
    }


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return ""
    text = f"{v:.2f}" if v < 100 else f"{v:.0f}"
    base = VERSUS.get(key)
    if base and row.get(base):
        text += f" ({v / row[base]:.2f}x)"
    return text


def markdown(results: Dict[str, dict]) -> str:
    """The breakdown as a markdown table: one column per (build, problem). results maps a
    build's label ("old", "new" or "this build") to measure()'s result."""
    first = next(iter(results.values()))
    problems = list(first["problems"])
    cols = [(label, p) for p in problems for label in results]
    head = "| us per call (x: vs F.conv2d / nn.Conv2d) | " + " | ".join(
        f"{p}, N={1 if p == ONE_BY_ONE else first['batch']}, {label}" for label, p in cols) + " |"
    lines = [head, "|---" * (len(cols) + 1) + "|"]
    for key, label in ROWS:
        cells = [_cell(results[b]["problems"][p], key) for b, p in cols]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return (f"CPU: {first['cpu']}, {first['threads']} torch threads, torch {first['torch']}; medians of "
            f"{first['rounds']} rounds of many calls, forward only, under no_grad unless said.\n\n"
            + "\n".join(lines) + "\n")


def _child_json(build: Optional[str], shapes: List[str], n: int, rounds: int) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(([build] if build else []) + [root])
    code = (f"import json, sys; from benchmarks.overhead import measure; "
            f"print(json.dumps(measure({shapes!r}, {n}, {rounds})))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=path), cwd="/",
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the measurement of {build or root} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(old: str, shapes: List[str], n: int, rounds: int, turns: int) -> Dict[str, dict]:
    """The breakdown of the build in folder `old` and of this checkout, each in its own
    process, `turns` times in alternation; each row the median over the turns."""
    runs: Dict[str, List[dict]] = {"old": [], "new": []}
    for t in range(turns):
        for label in (("old", "new") if t % 2 == 0 else ("new", "old")):
            runs[label].append(_child_json(old if label == "old" else None, shapes, n, rounds))
    merged = {}
    for label, results in runs.items():
        out = dict(results[0])
        out["rounds"] = f"{turns} processes x {rounds}"
        out["problems"] = {
            p: {k: statistics.median(r["problems"][p][k] for r in results)
                for k in results[0]["problems"][p] if k != "_min"}
            for p in results[0]["problems"]
        }
        merged[label] = out
    return merged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="lenet-mnist", help="comma-separated SPEC shapes besides 1x1x1x1")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--vs", metavar="OLD_DIR",
                   help="also time the build in this folder (holding an importable adaptive_conv_ext), "
                   "alternating processes with this checkout")
    p.add_argument("--turns", type=int, default=4, help="with --vs: processes per build")
    p.add_argument("--json", help="write the results here too")
    args = p.parse_args(argv)
    shapes = [s for s in args.shapes.split(",") if s]
    if args.vs:
        results = compare(args.vs, shapes, args.batch, args.rounds, args.turns)
    else:
        results = {"this build": measure(shapes, args.batch, args.rounds)}
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
