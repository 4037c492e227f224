"""The stdout table and the markdown table of a results dict (see suite.py)."""

from __future__ import annotations

from typing import List, Optional


def fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:,.0f}"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}x" if r < 10 else f"{r:.0f}x" if r < 1000 else f"{r:.2g}x"


def fmt_mb(b: Optional[int]) -> str:
    if b is None:
        return "-"
    mb = b / 2**20
    return f"{mb:.2f}" if mb < 10 else f"{mb:.0f}" if mb < 1e4 else f"{mb:.3g}"


def fmt_pct(p: Optional[float]) -> str:
    return "-" if p is None else f"{p:.1f}%" if p >= 10 else f"{p:.2g}%"


def _mem(r: dict, key: str) -> Optional[int]:
    m = r.get("memory") or {}
    return m.get(key) if m.get("status") == "ok" else None


def note(r: dict, limit: int = 0) -> str:
    if r["status"] != "ok":
        text = f"{r['status']}: {r.get('reason', '')}".rstrip(": ")
    else:
        parts = []
        if r.get("note"):
            parts.append(r["note"])
        m = r.get("memory") or {}
        if m and m.get("status") != "ok":
            parts.append(f"memory {m['status']}: {m.get('reason', '')}")
        text = "; ".join(parts)
    return text if not limit or len(text) <= limit else text[: limit - 3] + "..."


def row(r: dict, floor: bool) -> List[str]:
    cells = [
        r["label"],
        fmt_time(r.get("fwd_s")),
        fmt_ratio(r.get("ratio_fwd")),
        fmt_time(r.get("fwdbwd_s")),
        fmt_ratio(r.get("ratio_fwdbwd")),
        fmt_mb(_mem(r, "fwd_bytes")),
        fmt_mb(_mem(r, "fwdbwd_bytes")),
        fmt_ratio(r.get("mem_ratio_fwdbwd")),
        str(r.get("reps", "-")),
        "-" if r.get("rel_err") is None else f"{r['rel_err']:.1e}",
    ]
    if floor:
        cells += [fmt_pct(r.get("pct_floor_fwd")), fmt_pct(r.get("pct_floor_fwdbwd"))]
    return cells


HEADER = ["implementation", "fwd ms", "fwd vs native", "fwd+bwd ms", "f+b vs native",
          "peak MB fwd", "peak MB f+b", "mem vs native", "reps", "rel err"]
FLOOR_HEADER = ["% floor fwd", "% floor f+b"]


def case_name(case: dict) -> str:
    """The case's name, its dtype unless float32, and which gradients its forward+backward
    computes where that is not all of them or is labelled (SPEC section 3's first layers)."""
    name = case["name"] + ("" if case["dtype"] == "float32" else f" {case['dtype']}")
    return name + (f", f+b: {case['grads']}" if case.get("grads") else "")


def cores_used(results: dict) -> int:
    """The threads the timed code runs on: torch's intra-op threads."""
    return results["device"].get("torch_threads") or 1


def case_load(case: dict) -> Optional[float]:
    """The case's highest 1-minute load average (start or end), None if unknown."""
    loads = [case.get(k) for k in ("loadavg_1min_start", "loadavg_1min_end") if case.get(k) is not None]
    return max(loads) if loads else None


def load_warning(results: dict) -> str:
    """A warning when some case ran while the 1-minute load average exceeded the cores the
    benchmark uses: other processes then shared its cores, and its times are inflated."""
    cores = cores_used(results)
    loaded = [(case_name(c), case_load(c)) for c in results["cases"]
              if case_load(c) is not None and case_load(c) > cores]
    if not loaded:
        return ""
    worst = max(load for _, load in loaded)
    return (f"WARNING: {len(loaded)} of {len(results['cases'])} cases ran while the 1-minute load average "
            f"(up to {worst:.1f}) exceeded the {cores} core(s) the benchmark uses: other processes shared "
            f"them and those times are inflated (marked LOADED); rerun on an idle machine to compare.")


def case_title(case: dict, cores: int = 0) -> str:
    s = case["shape"]
    scaled = f" (SPEC N={case['N_spec']})" if case["N"] != case["N_spec"] else ""
    load = ""
    if case.get("loadavg_1min_start") is not None and case.get("loadavg_1min_end") is not None:
        load = f"  (1-min load {case['loadavg_1min_start']:.1f} -> {case['loadavg_1min_end']:.1f})"
        if cores and case_load(case) > cores:
            load += f" LOADED: above the {cores} core(s) used"
    grads = f"  [f+b: {case['grads']}]" if case.get("grads") else ""
    return (f"{case['name']}  N={case['N']}{scaled}  C={s['C']} O={s['O']} H=W={s['H']} k={s['k']} "
            f"pad={s['pad']} groups={s['groups']}  {case['dtype']}{grads}{load}")


def has_floor(results: dict) -> bool:
    return any(case.get("floor") for case in results["cases"])


def text_table(results: dict) -> str:
    floor = has_floor(results)
    head = HEADER + (FLOOR_HEADER if floor else []) + ["note"]
    lines = []
    for case in results["cases"]:
        rows = [row(r, floor) + [note(r, 90)] for r in case["results"]]
        widths = [max(len(x) for x in col) for col in zip(head, *rows)]
        lines.append("")
        lines.append(case_title(case, cores_used(results)))
        if case.get("floor"):
            f = case["floor"]
            lines.append(f"  floor: fwd {fmt_time(f['fwd_s'])} ms ({f['fwd']['bound']}-bound), "
                         f"fwd+bwd {fmt_time(f['fwdbwd_s'])} ms")
        for cells in [head] + rows:
            lines.append("  " + "  ".join(c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w)
                                          for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    lines.append("")
    if any(c.get("grads") for c in results["cases"]):
        lines.append("f+b: the gradients training needs (SPEC section 3): a first layer's without the input's "
                     "gradient; its 'all grads' case computes every gradient")
    lines.append("times: medians, ms; 'vs native': time (or peak memory) / native's, so >1 means native is "
                 "faster (smaller); rel err: ||y - y_ref|| / ||y_ref|| of the forward vs the reference")
    return "\n".join(lines)


def markdown_table(results: dict) -> str:
    """One table over all cases; long reasons go to numbered footnotes."""
    floor = has_floor(results)
    head = ["case", "N"] + HEADER + (FLOOR_HEADER if floor else []) + ["note"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    footnotes: List[str] = []
    for case in results["cases"]:
        name = case_name(case)
        for r in case["results"]:
            text = note(r)
            if len(text) > 40:
                footnotes.append(text)
                text = f"{r['status'] if r['status'] != 'ok' else 'see'} [{len(footnotes)}]"
            out.append("| " + " | ".join([name, str(case["N"])] + row(r, floor) + [text]) + " |")
    if footnotes:
        out.append("")
        out += [f"[{i}] {t}  " for i, t in enumerate(footnotes, 1)]
    return "\n".join(out)


def floor_summary_md(results: dict) -> str:
    """Per case: the native times, as % of the floor, and how many times faster than the
    eager and the torch.compile'd reference (empty when no case has a floor)."""
    if not has_floor(results):
        return ""
    # the CPU's FMA peak beside SPEC's sgemm floor, where it was measured (cpu_floor.py)
    peak = any(r.get("pct_peak_fwd") is not None for case in results["cases"] for r in case["results"])
    head = ["case", "N", "native fwd ms", "% floor fwd", "native f+b ms", "% floor f+b"] + \
        (["% FMA peak fwd / f+b"] if peak else []) + ["vs eager fwd / f+b", "vs compiled fwd / f+b"]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for case in results["cases"]:
        by = {r["impl"]: r for r in case["results"] if r["status"] == "ok"}
        nat = by.get("native")
        if not nat or not case.get("floor"):
            continue

        def ratios(impl):
            r = by.get(impl)
            return "-" if r is None else f"{fmt_ratio(r.get('ratio_fwd'))} / {fmt_ratio(r.get('ratio_fwdbwd'))}"

        name = case_name(case)
        out.append("| " + " | ".join([
            name, str(case["N"]), fmt_time(nat["fwd_s"]), fmt_pct(nat.get("pct_floor_fwd")),
            fmt_time(nat["fwdbwd_s"]), fmt_pct(nat.get("pct_floor_fwdbwd"))] +
            ([f"{fmt_pct(nat.get('pct_peak_fwd'))} / {fmt_pct(nat.get('pct_peak_fwdbwd'))}"] if peak else []) +
            [ratios("reference"), ratios("compiled")]) + " |")
    return "\n".join(out) + "\n\n"
