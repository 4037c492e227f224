"""The SASS and ptxas parsing of the CUDA kernels (no GPU needed), and CI's SASS check.

One parser for the static model (benchmarks/static_model.py) and for the check that
.ci/compile_cuda.sh runs as `python -m benchmarks.sass`:

  disassemble  kernel -> its sm_90 SASS instructions, from `cuobjdump -sass` of the objects
               (read_sass: the same under the short names)
  parse_ptxas  kernel -> registers and spill bytes, from the `-Xptxas -v` logs of the builds
  demangle     the short kernel names both print ("fwd_mma<half, 1, 1, true>")

The check prints the per-kernel table (registers, spill bytes, HMMA, MUFU.TANH 16-bit /
total) and fails (exit 1) unless:
  * every tensor-core forward kernel (fwd_mma) has HMMA and only 16-bit MUFU.TANH (no
    tanh.approx.f32 left in it);
  * every fused tensor-core backward kernel (bwd_mma) has HMMA and MUFU.TANH; in the float16
    ones all MUFU.TANH are 16-bit (packed tanh); the bfloat16 ones use tanh.approx.f32
    (kernels/backward_mma.cuh: BwdPackedTanh), reported only; every variant (dtype, KS, tail)
    exists for each set of gradients (the last template argument, BwdGrads: 1 input only,
    2 weight only, 3 all);
  * no kernel spills: 0 spill bytes in every kernel, for every architecture in the logs
    (sm_90 in CI; sm_80 too when it was built). The register caps that make that hold are
    in kernels/common.cuh (scalar_min_blocks) and forward_mma.cuh.

usage: python -m benchmarks.sass --cuobjdump PATH --log a.log --obj a.o [--log b.log --obj b.o ...]
       [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from functools import lru_cache
from typing import Dict, List


@lru_cache(maxsize=None)
def demangle(name: str) -> str:
    """`adaptive_conv2d_<name>_kernel<args>` of a mangled kernel name as `<name><args>`, with
    short type names (half, bf16, long)."""
    out = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip() or name
    m = re.search(r"adaptive_conv2d_(\w+?)_kernel(<[^()]*>)?", out)
    if not m:
        return out
    s = m.group(1) + (m.group(2) or "")
    for a, b in (("__nv_bfloat16", "bf16"), ("__half", "half"), ("long long", "long")):
        s = s.replace(a, b)
    return s


def disassemble(cuobjdump: str, objs: List[str]) -> Dict[str, List[tuple]]:
    """kernel (mangled) -> [(address, instruction)] of its sm_90 SASS. Mangled names keep
    apart the copies of one kernel that several files compile (anonymous namespaces)."""
    kernels: Dict[str, List[tuple]] = {}
    for obj in objs:
        r = subprocess.run([cuobjdump, "-sass", "-arch", "sm_90", obj], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"cuobjdump failed on {obj}: {r.stderr.strip()}")
        cur = None
        for line in r.stdout.splitlines():
            m = re.search(r"Function : (\S+)", line)
            if m:
                cur = m.group(1)
                kernels[cur] = []
                continue
            m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
            if m and cur is not None:
                kernels[cur].append((int(m.group(1), 16), m.group(2).strip()))
    return kernels


def read_sass(cuobjdump: str, objs: List[str]) -> Dict[str, List[tuple]]:
    """kernel (demangled) -> [(address, instruction)] of its sm_90 SASS (the static model's view)."""
    return {demangle(k): v for k, v in disassemble(cuobjdump, objs).items()}


def parse_ptxas(log: str, want_arch: str = "sm_90") -> dict:
    """kernel (mangled) -> {regs, spill} from `ptxas -v` output (entries of want_arch only)."""
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


def log_archs(log: str) -> List[str]:
    """The architectures a ptxas -v log has entries for."""
    return sorted(set(re.findall(r"Compiling entry function '\S+' for '(sm_\d+a?)'", log)))


def unit_counts(code: List[tuple]) -> dict:
    """HMMA and MUFU.TANH (all, and the 16-bit MUFU.TANH.F16 / .BF16 of the packed
    tanh.approx.{f16x2,bf16x2}) in a kernel's SASS."""
    ins = [i for _, i in code]
    return {"hmma": sum(1 for i in ins if re.search(r"\bHMMA\.", i)),
            "tanh": sum(1 for i in ins if "MUFU.TANH" in i),
            "tanh16": sum(1 for i in ins if re.search(r"MUFU\.TANH\.(F16|BF16)", i))}


def check(regs: dict, other_archs: dict, sass: Dict[str, List[tuple]]) -> tuple:
    """(table rows, failures) of the SASS check: regs and other_archs from parse_ptxas (sm_90,
    and per other architecture), sass from disassemble; all keyed by mangled names."""
    rows, failures = [], []
    for mangled in sorted(set(regs) | set(sass), key=demangle):
        name = demangle(mangled)
        p, s = regs.get(mangled, {}), unit_counts(sass.get(mangled, []))
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
        failures += [f"{demangle(m)}: spills {e['spill']} bytes ({arch})" for m, e in sorted(entries.items())
                     if e.get("spill", 0) > 0]
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
    return rows, failures


def main() -> int:
    ap = argparse.ArgumentParser(description="SASS check of the CUDA kernels (see the module docstring)")
    ap.add_argument("--cuobjdump", required=True)
    ap.add_argument("--log", action="append", default=[])
    ap.add_argument("--obj", action="append", default=[])
    ap.add_argument("--markdown")
    args = ap.parse_args()

    regs: dict = {}
    other_archs: dict = {}  # arch -> {kernel: {regs, spill}}: spills are checked there too
    for path in args.log:
        with open(path) as f:
            text = f.read()
        regs.update(parse_ptxas(text))
        for arch in set(log_archs(text)) - {"sm_90"}:
            other_archs.setdefault(arch, {}).update(parse_ptxas(text, arch))
    try:
        sass = disassemble(args.cuobjdump, args.obj)
    except RuntimeError as e:
        print(f"sass_check: {e}")
        return 1
    rows, failures = check(regs, other_archs, sass)

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
    for f in failures:
        print("sass_check: FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
