"""Headline numbers for scripts/gpu_session.sh's summary.txt (no torch import: quick).

  python scripts/gpu_session_summary.py junit FILE.xml    -> "P passed, F failed, ..."
  python scripts/gpu_session_summary.py bench FILE.json   -> per dtype: native/triton
                                                             fwd and fwd+bwd ms, % of floor
  python scripts/gpu_session_summary.py sanitizer LOG     -> the ERROR SUMMARY lines
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from typing import List


def junit(path: str) -> str:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return f"{passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped"


def _pct(v) -> str:
    return "-" if v is None else f"{v:.1f}%"


def _ms(v) -> str:
    return "-" if v is None else f"{v * 1e3:.3g} ms"


def bench(path: str) -> List[str]:
    with open(path) as f:
        res = json.load(f)
    lines = []
    for case in res["cases"]:
        for r in case["results"]:
            if r["impl"] not in ("native", "triton"):
                continue
            head = f"{case['name']} N={case['N']} {case['dtype']} {r['impl']}: "
            if r["status"] != "ok":
                lines.append(head + f"{r['status']} ({r.get('reason', '')[:80]})")
                continue
            lines.append(head + f"fwd {_ms(r.get('fwd_s'))} = {_pct(r.get('pct_floor_fwd'))} of floor, "
                         f"fwd+bwd {_ms(r.get('fwdbwd_s'))} = {_pct(r.get('pct_floor_fwdbwd'))} of floor")
    clock = res.get("device", {}).get("gpu", {})
    lines.append(f"{len(res['cases'])} case(s){'' if res.get('complete') else ' (run cut short)'}; "
                 f"SM clock {clock.get('sm_clock_khz', 0) / 1e3:.0f} MHz from {clock.get('clock_source', '?')}")
    return lines


def sanitizer(path: str) -> str:
    with open(path, errors="replace") as f:
        found = re.findall(r"ERROR SUMMARY: .*", f.read())
    return found[-1] if found else "no ERROR SUMMARY line"


def main(argv: List[str]) -> int:
    kind, path = argv
    try:
        out = {"junit": junit, "bench": bench, "sanitizer": sanitizer}[kind](path)
    except (OSError, ValueError, KeyError, ET.ParseError) as exc:
        out = f"({kind} headline unavailable: {type(exc).__name__}: {exc})"
    print("\n".join(out) if isinstance(out, list) else out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
