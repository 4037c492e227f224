"""mid-64 (float32, N=1, 2 threads unless --threads) forward and forward+backward of the fused CPU
kernels per instruction set (ATEN_CPU_CAPABILITY=default/avx2/avx512), each build
in its own child process, alternating the builds for several rounds in one run.

    python benchmarks/results/isa_timing.py [--rounds 3] [--threads 2] [--trees DIR ...]

Each --trees entry is a checkout with a built adaptive_conv_ext (the child imports
it from there), so an older build can be timed in the same run."""

import argparse
import json
import os
import platform
import subprocess
import sys

CHILD = r"""
import json, sys, time, torch, adaptive_conv_ext
torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
N, C, O, H, k = 1, 64, 64, 56, 3  # benchmarks/shapes.py mid-64, cpu_N=1
x = torch.randn(N, C, H, H, generator=g)
w = torch.randn(O, C, k, k, k, k, generator=g) / k
kb = torch.randn(O, C, k, k, generator=g) * 0.1
ops = torch.ops.adaptive_conv_ext
fwd = lambda: ops.adaptive_conv2d_forward(x, w, kb, None, [1, 1], [1, 1], [1, 1], 1)
y = fwd()
gy = torch.randn(y.shape, generator=g)
def fb():
    fwd()
    ops.adaptive_conv2d_backward(gy, x, w, kb, [1, 1], [1, 1], [1, 1], 1, [True, True])
def median_ms(fn, reps):
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); t.append(time.perf_counter() - t0)
    return sorted(t)[len(t) // 2] * 1e3
print(json.dumps({"forward_ms": median_ms(fwd, 5), "fwd_bwd_ms": median_ms(fb, 3)}))
"""


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--trees", nargs="*", default=[os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))])
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; {args.threads} threads; load average before: {os.getloadavg()}")
    rows = []
    for rnd in range(args.rounds):
        for tree in args.trees:
            for isa in ("default", "avx2", "avx512"):
                env = {**os.environ, "ATEN_CPU_CAPABILITY": isa}
                out = subprocess.run([sys.executable, "-c", CHILD, str(args.threads)], cwd=tree, env=env, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(out.stderr[-2000:])
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append({"round": rnd, "tree": tree, "isa": isa, "threads": args.threads, **r, "load": os.getloadavg()[0]})
                print(f"round {rnd} {tree:24s} {isa:8s} forward {r['forward_ms']:7.1f} ms  "
                      f"fwd+bwd {r['fwd_bwd_ms']:7.1f} ms  (load {rows[-1]['load']:.1f})", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
