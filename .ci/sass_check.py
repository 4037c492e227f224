"""SASS check of the CUDA kernels (no GPU needed): per-kernel table and assertions.

Input: the sm_90 objects/cubins nvcc built and the `-Xptxas -v` logs of the same builds.
For every kernel: registers and spill bytes (ptxas), HMMA count and MUFU.TANH count, split
into 16-bit (MUFU.TANH.F16 / .BF16: the packed tanh.approx.{f16x2,bf16x2}) and total.

Asserts (exit 1 on failure):
  * every tensor-core forward kernel (adaptive_conv2d_fwd_mma_kernel) has HMMA and only
    16-bit MUFU.TANH (no tanh.approx.f32 left in it);
  * every fused tensor-core backward kernel (adaptive_conv2d_bwd_mma_kernel) has HMMA and
    MUFU.TANH; in the float16 ones all MUFU.TANH are 16-bit (packed tanh); the bfloat16
    ones use tanh.approx.f32 (kernels/backward_mma.cuh: BwdPackedTanh), reported only;
    every variant (dtype, KS, tail) exists for each set of gradients (the last template
    argument, BwdGrads: 1 input only, 2 weight only, 3 all);
  * no kernel spills: 0 spill bytes in every kernel, for every architecture in the logs
    (sm_90 in CI; sm_80 too when it was built). The register caps that make that hold are
    in kernels/common.cuh (scalar_min_blocks) and forward_mma.cuh.

usage: python .ci/sass_check.py --cuobjdump PATH --log a.log --obj a.o [--log b.log --obj b.o ...]
       [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.static_model import demangle as short_name  # noqa: E402

def parse_ptxas(log: str, want_arch: str = "sm_90") -> dict:
    """mangled name -> {regs, spill} from `ptxas -v` output (entries of want_arch only)."""
    out: dict = {}
    cur, arch = None, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+a?)'", line)
        if m:
            cur, arch = m.group(1), m.group(2)
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = m.group(1)
            continue
        if cur is None or (arch is not None and arch != want_arch):
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            out.setdefault(cur, {})["spill"] = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            out.setdefault(cur, {})["regs"] = int(m.group(1))
    return out


def parse_sass(text: str) -> dict:
    """mangled name -> {hmma, tanh, tanh16} from `cuobjdump -sass`."""
    out: dict = defaultdict(lambda: {"hmma": 0, "tanh": 0, "tanh16": 0})
    cur = None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = m.group(1)
            out[cur]
            continue
        if cur is None:
            continue
        if re.search(r"\bHMMA\.", line):
            out[cur]["hmma"] += 1
        if "MUFU.TANH" in line:
            out[cur]["tanh"] += 1
            if re.search(r"MUFU\.TANH\.(F16|BF16)", line):
                out[cur]["tanh16"] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuobjdump", required=True)
    ap.add_argument("--log", action="append", default=[])
    ap.add_argument("--obj", action="append", default=[])
    ap.add_argument("--markdown")
    args = ap.parse_args()

    regs: dict = {}
    other_archs: dict = {}  # arch -> {mangled: {regs, spill}}: spills are checked there too
    for path in args.log:
        text = open(path).read()
        regs.update(parse_ptxas(text))
        for arch in sorted(set(re.findall(r"Compiling entry function '\S+' for '(sm_\d+a?)'", text)) - {"sm_90"}):
            other_archs.setdefault(arch, {}).update(parse_ptxas(text, arch))
    sass: dict = {}
    for path in args.obj:
        r = subprocess.run([args.cuobjdump, "-sass", "-arch", "sm_90", path], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"sass_check: cuobjdump failed on {path}: {r.stderr.strip()}")
            return 1
        sass.update(parse_sass(r.stdout))

    rows, failures = [], []
    for mangled in sorted(set(regs) | set(sass), key=short_name):
        name = short_name(mangled)
        p, s = regs.get(mangled, {}), sass.get(mangled, {"hmma": 0, "tanh": 0, "tanh16": 0})
        rows.append((name, p.get("regs", -1), p.get("spill", -1), s["hmma"], s["tanh16"], s["tanh"]))
        if name.startswith("fwd_mma<"):
            if s["hmma"] == 0:
                failures.append(f"{name}: no HMMA in the tensor-core kernel")
            if s["tanh16"] == 0 or s["tanh16"] != s["tanh"]:
                failures.append(f"{name}: MUFU.TANH 16-bit {s['tanh16']} of {s['tanh']} (want all, > 0)")
        if name.startswith("bwd_mma<"):
            if s["hmma"] == 0 or s["tanh"] == 0:
                failures.append(f"{name}: HMMA {s['hmma']}, MUFU.TANH {s['tanh']} in the fused backward (want both > 0)")
            if name.startswith("bwd_mma<half") and s["tanh16"] != s["tanh"]:
                failures.append(f"{name}: MUFU.TANH 16-bit {s['tanh16']} of {s['tanh']} (want all)")
        spill = p.get("spill", -1)
        if spill > 0:
            failures.append(f"{name}: spills {spill} bytes (sm_90)")
        elif spill < 0:
            failures.append(f"{name}: no ptxas -v record")
    for arch, entries in other_archs.items():
        failures += [f"{short_name(m)}: spills {e['spill']} bytes ({arch})"
                     for m, e in sorted(entries.items()) if e.get("spill", 0) > 0]

    table = ["| kernel (sm_90) | registers | spill bytes | HMMA | MUFU.TANH 16-bit / total |",
             "|---|---:|---:|---:|---:|"]
    table += [f"| `{n}` | {r} | {sp} | {h} | {t16} / {t} |" for n, r, sp, h, t16, t in rows]
    print("\n".join(table))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table) + "\n")
    mma = [r for r in rows if r[0].startswith(("fwd_mma<", "bwd_mma<"))]
    spilling = [r for r in rows if r[2] > 0]
    checked = ", ".join(["sm_90"] + [f"{a} ({len(e)} kernels)" for a, e in other_archs.items()])
    print(f"sass_check: {len(rows)} kernels, {len(mma)} tensor-core, {len(spilling)} spilling on sm_90; "
          f"spills checked on {checked}")
    if not any(r[0].startswith("fwd_mma<") for r in rows):
        failures.append("no tensor-core forward kernel found in the objects")
    if not any(r[0].startswith("bwd_mma<") for r in rows):
        failures.append("no fused tensor-core backward kernel found in the objects")
    grads_of: dict = defaultdict(set)  # "bwd_mma<t, KS, tail" -> {grads}
    for r in rows:
        m = re.match(r"(bwd_mma<[^,]+, -?\d+, -?\d+), (\d+)>$", r[0])
        if r[0].startswith("bwd_mma<") and not m:
            failures.append(f"{r[0]}: not bwd_mma<type, KS, tail, grads>")
        elif m:
            grads_of[m.group(1)].add(int(m.group(2)))
    failures += [f"{v}, ...>: gradient variants {sorted(g)} (want 1, 2, 3)" for v, g in sorted(grads_of.items())
                 if g != {1, 2, 3}]
    for f in failures:
        print("sass_check: FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
