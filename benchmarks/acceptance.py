"""Issue 2's acceptance check: fused CPU kernels vs the eager reference.

    python -m benchmarks.acceptance            [--reps 20] [--out DIR]

Case issue2-cpu: N=2, C=O=32, H=W=40, k=3, padding 1, float32 on the CPU. Passes when
the native forward+backward is at least 4x faster than the eager reference and its
peak memory (child-process RSS above the inputs) at least 5x lower. Exit status 0 = pass.
"""

from __future__ import annotations

import argparse
import sys

from .suite import run

MIN_SPEEDUP = 4.0
MIN_MEMORY_RATIO = 5.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.acceptance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--out", help="directory for the JSON/PNG/markdown (default: results/, untracked)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    suite_args = ["--device", "cpu", "--shapes", "issue2-cpu", "--backends", "native,reference",
                  "--dtypes", "float32", "--reps", str(args.reps), "--tag", "issue2", "--no-plot"]
    suite_args += ["--out", args.out] if args.out else []
    suite_args += ["--no-progress"] if args.no_progress else []
    results, _ = run(suite_args)

    by = {r["impl"]: r for r in results["cases"][0]["results"]}
    ref = by["reference"]
    if by["native"]["status"] != "ok" or ref["status"] != "ok":
        print(f"\nissue 2 acceptance: cannot decide (native: {by['native']['status']}, reference: {ref['status']})")
        return 1
    speedup = ref.get("ratio_fwdbwd")
    mem_ratio = ref.get("mem_ratio_fwdbwd")
    ok_t = speedup is not None and speedup >= MIN_SPEEDUP
    ok_m = mem_ratio is not None and mem_ratio >= MIN_MEMORY_RATIO
    nm, rm = by["native"]["memory"], ref["memory"]
    print("\nissue 2 acceptance (N=2, C=O=32, H=W=40, k=3, pad 1, float32, CPU):")
    print(f"  fwd+bwd time   native {by['native']['fwdbwd_s'] * 1e3:.2f} ms, reference {ref['fwdbwd_s'] * 1e3:.2f} ms: "
          f"{speedup:.1f}x faster (need >= {MIN_SPEEDUP:g}x)  {'PASS' if ok_t else 'FAIL'}")
    if mem_ratio is None:
        print("  peak memory    not measured  FAIL")
    else:
        print(f"  peak memory    native {nm['fwdbwd_bytes'] / 2**20:.2f} MiB, reference "
              f"{rm['fwdbwd_bytes'] / 2**20:.2f} MiB above the inputs: {mem_ratio:.1f}x lower "
              f"(need >= {MIN_MEMORY_RATIO:g}x)  {'PASS' if ok_m else 'FAIL'}")
    return 0 if ok_t and ok_m else 1


if __name__ == "__main__":
    sys.exit(main())
