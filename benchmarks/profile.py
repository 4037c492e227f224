"""torch.profiler table of one forward+backward of one implementation on one case.

    python -m benchmarks.profile --shape mid-64 --backend native
    python -m benchmarks.profile --shape depthwise-k7 --backend reference --device cpu --batch 1
    python -m benchmarks.profile --shape mid-64 --backend triton --trace trace.json   # chrome://tracing

The call is warmed up first (compile, autotuning, allocator), then profiled once.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from . import impls as I
from .runner import Runner
from .shapes import SHAPES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="mid-64", choices=list(SHAPES))
    p.add_argument("--backend", default="native", choices=list(I.IMPLS))
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=list(I.DTYPES))
    p.add_argument("--batch", type=int, default=0, help="N (default: the suite's N for this device)")
    p.add_argument("--forward-only", action="store_true", help="profile a forward under no_grad instead")
    p.add_argument("--all-grads", action="store_true",
                   help="a first layer's backward with the input's gradient too (default: as SPEC section 3 "
                   "says training needs, without it)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--row-limit", type=int, default=25)
    p.add_argument("--sort-by", help="default self_cuda_time_total on a GPU, self_cpu_time_total on a CPU")
    p.add_argument("--memory", action="store_true", help="also record allocations (profile_memory)")
    p.add_argument("--trace", help="write a Chrome trace to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")

    shape = SHAPES[args.shape]
    reason = I.unavailable_reason(args.backend, shape, args.device)
    if reason:
        print(f"cannot profile {args.backend} on {args.shape}: {reason}", file=sys.stderr)
        return 2
    n = shape.batch(args.device, quick=False, override=args.batch)
    input_grad = shape.input_grad or args.all_grads
    inp = I.make_inputs(shape, n, I.DTYPES[args.dtype], args.device, input_grad=input_grad)
    fn, params = I.build(args.backend, shape, inp)
    run = Runner(fn, params, inp["grad_out"])
    step = run.fwd if args.forward_only else run.fwdbwd
    for _ in range(args.warmup):
        run.clear()
        step()
    run.clear()
    if args.device == "cuda":
        torch.cuda.synchronize()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    what = "forward" if args.forward_only else "forward+backward" + ("" if input_grad else " (no input grad)")
    with profile(activities=activities, record_shapes=True, profile_memory=args.memory) as prof:
        with record_function(f"{args.backend} {what}"):
            step()
        if args.device == "cuda":
            torch.cuda.synchronize()
    sort_by = args.sort_by or ("self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total")
    print(f"{args.backend} {what}: {args.shape} N={n} C={shape.C} O={shape.O} H=W={shape.H} k={shape.k} "
          f"pad={shape.pad} groups={shape.groups} {args.dtype} on {args.device}")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=args.row_limit))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"wrote {args.trace}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
