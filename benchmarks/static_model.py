"""Static performance model of the CUDA forward kernels: expected percentage of the SPEC
section 4 floor on an H100/H200 (sm_90), from the SASS of each kernel. No GPU needed;
nothing here is a measurement.

For each kernel the model takes the innermost loop of its SASS that does the per-(o, c)
work (the innermost backward branch around the HMMA of a tensor-core kernel, around the
MUFU.TANH of a scalar one), counts its instructions by pipe and converts them to SM cycles
at sm_90 rates (per SM per clock: 4 warp instructions issued, 16 MUFU results = 2 cycles
per warp MUFU (MUFU.TANH.F16/.BF16 assumed at the same rate: the packed tanh is two of them), 128 FP32 FMA lanes, and, assumed for mma.sync m16n8k16 (2048 MACs), 1024
dense 16-bit MACs = 2 cycles per HMMA, half the wgmma peak that the floor uses):

  cycles per loop trip = max(all instructions / 4, MUFU * 2, HMMA * 2, FFMA / 4)

against the floor of the same trip (SPEC section 4: useful tanh / 32 per SM clock for
16-bit types, the packed form counting half; / 16 for float32; or the multiply-adds / their
unit's rate when that is slower: float32 from 3x3 on, see floor_tanh_per_clk). Useful tanh per trip:
32 pixels x the MUFU.TANH of the trip (scalar kernels: one pixel per lane), or 16 pixels x
T x the output channels of the trip (tensor-core kernels, whose n8 tiles also compute the
padding columns). The tensor-core forward has up to three per-channel loops (mma_forward_loop):
one output channel (depthwise), 8 unrolled, and a general one for other block widths (a
test per output channel; covering 8, with fewer the A-fragment gather before the first
ldmatrix is paid in full and the rest in proportion). tanh evaluated on the FMA pipe
(kernels/soft_tanh.cuh) counts as the issue slots of its instructions, not as MUFU.
forward_floor_rows adds the shared-memory staging per round (with_staging). Bandwidth is
ignored (the SPEC shapes are tanh-bound by ~100x), as are barriers, latency and occupancy:
the model is an upper bound on what the kernel's instruction mix allows.

Which kernel runs, with which tile and how many output channels per block, is the C++
planner's decision (kernels/planner.cuh) for an H100 (SM90_LIMITS): read_plans asks it
through the CPU emulation binary's `plan` mode (testing/emulate_kernels.cpp), so the model
has no copy of the planner.

usage: python -m benchmarks.static_model --cuobjdump PATH --obj f16.o --obj bf16.o --obj f32.o
       [--planner EMULATE_BINARY] [--md OUT.md] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from typing import Callable, Dict, List, Optional

from .sass import read_sass  # the one SASS parser (benchmarks/sass.py)
from .shapes import SPEC_SHAPES

ISSUE_PER_CLK, MUFU_CLK, HMMA_CLK, FFMA_PER_CLK = 4, 2, 2, 4
MMA_LOOP_CHANNELS = 8  # output channels the unrolled forward_mma loop covers (a kernel fact: kMmaOct)
# SPEC section 4's multiply-add units on sm_90, per SM per clock (benchmarks/floors.py):
# FP32 FMA lanes, dense 16-bit matrix multiply-adds.
FP32_FMA_PER_SM_CLK, MMA16_MAC_PER_SM_CLK = 128, 2048


def floor_tanh_per_clk(dtype: str, macs_per_tanh: int) -> float:
    """Useful tanh per SM clock at the SPEC section 4 floor: the tanh rate (16; the packed
    16-bit form counts half: 32) or the multiply-add rate / multiply-adds per tanh (forward:
    kH*kW + 1; backward: 3*kH*kW + 1), whichever is slower. float32 is FMA-bound from 3x3 on."""
    sixteen = dtype != "float32"
    mac_rate = MMA16_MAC_PER_SM_CLK if sixteen else FP32_FMA_PER_SM_CLK
    return min(32 if sixteen else 16, mac_rate / macs_per_tanh)


# --- the C++ planner's decisions ------------------------------------------------------------
# The device the model plans for: an H100 SXM (sm_90: 132 SMs, 227 KB of shared memory per
# block with opt-in, 228 KB per SM, 64 K registers per SM).
SM90_LIMITS = {"sms": 132, "optin": 227 * 1024, "per_sm": 228 * 1024, "regs": 64 * 1024, "arch": 90}
DTYPE_ARG = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}
GRADS = ("none", "weight", "input", "both")  # none: the forward plan


def training_input_grad(shape) -> bool:
    """SPEC section 3: training needs every gradient except the input's for the two first
    layers, whose input never requires grad."""
    return shape.input_grad  # benchmarks/shapes.py holds SPEC section 3's column


def read_plans(planner: str, limits: Optional[dict] = None, shapes=None) -> Dict[tuple, dict]:
    """(shape name, dtype, grads) -> the plan the C++ planner makes for it (non-deterministic
    mode), as the emulation binary's `plan` mode prints it: the kernels the launchers run (the
    names sass.demangle gives their SASS), the tile, output channels per block (oct), etc."""
    limits = limits or SM90_LIMITS
    shapes = shapes or SPEC_SHAPES
    keys, lines = [], []
    dev = " ".join(f"{k}={v}" for k, v in limits.items())
    for shape in shapes:
        for dtype, arg in DTYPE_ARG.items():
            for grads in GRADS:
                keys.append((shape.name, dtype, grads))
                lines.append(f"dtype={arg} grads={grads} det=0 {dev} N={shape.N} C={shape.C} O={shape.O} "
                             f"H={shape.H} W={shape.W} k={shape.k} pad={shape.pad} groups={shape.groups}")
    r = subprocess.run([planner, "plan"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{planner} plan failed: {r.stderr.strip()[-2000:]}")
    out = {}
    for key, text in zip(keys, r.stdout.splitlines()):
        plan = json.loads(text)
        if "error" in plan:
            raise RuntimeError(f"the planner has no plan for {key}: {plan['error']}")
        out[key] = plan
    if len(out) != len(keys):
        raise RuntimeError(f"{planner} plan answered {len(out)} of {len(keys)} requests")
    return out


def _loop_spans(code: List[tuple]) -> List[tuple]:
    """(first address, branch address, instructions) of every backward-branch loop, in the
    order of their branches."""
    out = []
    for addr, ins in code:
        m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", ins)
        if m and int(m.group(1), 16) < addr:
            target = int(m.group(1), 16)
            out.append((target, addr, [i for a, i in code if target <= a <= addr]))
    return out


def innermost_loop(code: List[tuple], marker: str, without: Optional[str] = None) -> Optional[List[str]]:
    """Instructions of the smallest backward-branch loop that contains `marker` (and not `without`)."""
    best = None
    for _, _, body in _loop_spans(code):
        if without and any(without in i for i in body):
            continue
        if any(marker in i for i in body) and (best is None or len(body) < len(best)):
            best = body
    return best


def innermost_loops(code: List[tuple], marker: str) -> List[List[str]]:
    """The backward-branch loops that contain `marker` and no smaller such loop, in address order."""
    spans = [s for s in _loop_spans(code) if any(marker in i for i in s[2])]
    inner = [s for s in spans if not any(o is not s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    return [b for _, _, b in sorted(inner, key=lambda s: s[0])]


def mma_forward_loop(code: List[tuple], og: int) -> tuple:
    """(loop, output channels it covers) of the tensor-core forward's per-channel loop that
    blocks of min(og, 8) output channels run. forward_mma.cuh has up to three: one output
    channel (depthwise: a fraction of the others' MUFU), 8 unrolled (K <= 32 only; few
    branches) and the general one (a test per output channel: the most branches); older
    kernels have one, covering 8."""
    loops = innermost_loops(code, "HMMA")
    if not loops:
        return None, MMA_LOOP_CHANNELS
    mufu = [sum(1 for i in b if "MUFU.TANH" in i) for b in loops]
    single = None
    if len(loops) > 1 and 2 * min(mufu) < max(mufu):
        single = loops[mufu.index(min(mufu))]
        if og == 1:
            return single, 1
    rest = sorted((b for b in loops if b is not single), key=lambda b: sum(1 for i in b if re.search(r"\bBRA\b", i)))
    return (rest[0] if og >= MMA_LOOP_CHANNELS and len(rest) >= 2 else rest[-1]), MMA_LOOP_CHANNELS


def count(body: List[str]) -> dict:
    def n(pat: str) -> int:
        return sum(1 for i in body if re.search(pat, i))

    return {"instr": len(body), "hmma": n(r"\bHMMA\."), "mufu_tanh": n(r"MUFU\.TANH"), "ffma": n(r"\bFFMA\b"),
            "lds": n(r"\bLDS"), "ldsm": n(r"\bLDSM")}


def model(c: dict, useful_tanh: float, tanh_per_clk: float, instr_scale: float = 1.0, hmma_scale: float = 1.0,
          mufu_scale: float = 1.0) -> dict:
    cycles = max(c["instr"] * instr_scale / ISSUE_PER_CLK, c["mufu_tanh"] * mufu_scale * MUFU_CLK,
                 c["hmma"] * hmma_scale * HMMA_CLK, c["ffma"] * instr_scale / FFMA_PER_CLK)
    floor = useful_tanh / tanh_per_clk
    return {"cycles": cycles, "floor_cycles": floor, "pct_of_floor": 100.0 * floor / cycles}


def forward_rows(kernels: Dict[str, List[tuple]], plans: Dict[tuple, dict]) -> List[dict]:
    """Per SPEC shape and dtype: 'before' the scalar forward (what the planner runs for
    float32; for 16-bit types the kernel it would run without tensor cores), 'after' the
    tensor-core kernel the planner picks for 16-bit types, with its output channels per block."""
    rows = []
    for shape in SPEC_SHAPES:
        T = shape.k * shape.k
        for dtype, tname in (("bfloat16", "bf16"), ("float16", "half"), ("float32", "float")):
            plan = plans[shape.name, dtype, "none"]
            tanh_per_clk = floor_tanh_per_clk(dtype, T + 1)
            row = {"shape": shape.name, "dtype": dtype, "k": shape.k, "groups": shape.groups}
            scalar = plan["kernels"][0] if not plan["mma"] else f"fwd<{tname}, int, {shape.k}, {shape.k}>"
            # float32 uses the exact tanhf: one MUFU.EX2 (plus a reciprocal) per tanh.
            marker = "MUFU.EX2" if dtype == "float32" else "MUFU.TANH"
            body = innermost_loop(kernels.get(scalar, []), marker)
            if body:
                c = count(body)
                if dtype == "float32":
                    c["mufu_tanh"] = sum(1 for i in body if re.search(r"MUFU\.(EX2|RCP)", i))
                tanh_evals = 32 * sum(1 for i in body if marker in i)
                row["before"] = {"kernel": scalar, **c, **model(c, tanh_evals, tanh_per_clk)}
            if plan["mma"]:
                name, oct_ = plan["kernels"][-1], plan["oct"]
                body, covers = mma_forward_loop(kernels.get(name, []), oct_)
                if body:
                    c = count(body)
                    first = next(i for i, ins in enumerate(body) if "LDSM" in ins or "HMMA" in ins)
                    share = (first + (c["instr"] - first) * oct_ / covers) / c["instr"]
                    m = model(c, 16 * T * oct_, tanh_per_clk, instr_scale=share, hmma_scale=oct_ / covers,
                              mufu_scale=oct_ / covers)
                    row["after"] = {"kernel": name, **c, "oct": oct_, "instr_scale": share,
                                    "mufu_scale": oct_ / covers, **m}
            mma = plan["mma"]
            chosen = row.get("after") if mma else row.get("before")
            row["planner"] = {"kernel": "tensor-core" if mma else "scalar",
                              "pct_of_floor": chosen["pct_of_floor"] if chosen else None}
            rows.append(row)
    return rows


def markdown(rows: List[dict]) -> str:
    out = ["| shape | dtype | before: kernel | loop instr / MUFU / FFMA | % of floor | after: kernel | "
           "loop instr / HMMA / MUFU.TANH (16-bit) | % of floor | planner runs | % of floor |",
           "|---|---|---|---|---:|---|---|---:|---|---:|"]
    for r in rows:
        b, a = r.get("before"), r.get("after")
        bs = (f"`{b['kernel']}` | {b['instr']} / {b['mufu_tanh']} / {b['ffma']} | {b['pct_of_floor']:.0f}%"
              if b else "- | - | -")
        as_ = (f"`{a['kernel']}` (oct {a['oct']}) | {a['instr']} / {a['hmma']} / {a['mufu_tanh']} | "
               f"{a['pct_of_floor']:.0f}%" if a else "unchanged | | ")
        p = r["planner"]
        ps = f"{p['kernel']} | {p['pct_of_floor']:.0f}%" if p["pct_of_floor"] is not None else f"{p['kernel']} | -"
        out.append(f"| {r['shape']} | {r['dtype']} | {bs} | {as_} | {ps} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the floor report

# Row producers for `python -m benchmarks --floors` (floor_rows): each takes the kernels
# read_sass returns and gives rows {shape, dtype, pass, kernel, pct_of_floor}. A section
# added to this module (e.g. the forward+backward of the fused backward) appends itself.
FLOOR_SECTIONS: List[Callable[[Dict[str, List[tuple]]], List[dict]]] = []


def _loops(code: List[tuple]) -> List[List[str]]:
    """Bodies of all backward-branch loops, in address order."""
    return [body for _, _, body in _loop_spans(code)]


def mma_staging_costs(code: List[tuple]) -> Optional[dict]:
    """SASS instructions per staged element of the tensor-core forward's shared-memory
    staging loops (no HMMA, no barrier inside): the input box (16-bit stores with a global
    load) and Q (16-byte stores of 8 elements: copies of the packed rows when the loop loads
    16 bytes at a time, else rows built in the loop; in older code 16-bit stores too: then the
    second such loop). The main (most unrolled) loop of each kind sets its cost."""
    box, q16, q128 = [], [], []
    for body in _loops(code):
        if any(re.search(r"\bHMMA\.|\bBAR\b", i) for i in body):
            continue
        n16 = sum(1 for i in body if i.startswith("STS.U16") or " STS.U16" in i)
        n128 = sum(1 for i in body if i.startswith("STS.128") or " STS.128" in i)
        ldg = any("LDG" in i for i in body)
        if n128 and ldg:  # (a loop of STS.128 alone zeroes shared memory once per block)
            packed = any(re.search(r"\bLDG\S*\.128\b", i) for i in body)  # copies packed rows
            q128.append((n128, len(body) / n128, packed))
        elif n16 and ldg:
            (q16 if box else box).append((n16, len(body) / n16))
    if not box or not (q128 or q16):
        return None
    q = max(q128 or q16)
    return {"box_per_elem": max(box)[1], "q_per_store": q[1], "q_elems_per_store": 8 if q128 else 1,
            "q_packed": bool(q128) and q[2]}


def mma_forward_geometry(shape, plan: dict) -> dict:
    """What the model needs of the planner's tensor-core forward plan: the pixel tile, output
    (oct) and input (cch) channels per round, the packed B rows staged per channel (q_rows),
    the warps with pixels, the share of their pixel slots inside the image, and the threads
    that stage the box (forward_mma.cuh stage_box_mma: 256 // bw rows at a time)."""
    t, ho = plan["tile"], shape.out_size()
    toh, tow = t["toh"], t["tow"]
    warps = math.ceil(toh * tow / 16)  # warps with pixels (the rest of the 8 only stage)
    useful = ho * ho / (t["tiles_h"] * t["tiles_w"] * warps * 16)
    return {"toh": toh, "tow": tow, "box": t["bh"] * t["bw"], "ks": plan["ks"], "oct": plan["oct"],
            "cch": plan["cch"], "pixel_use": useful, "warps": warps, "shared_last": plan["q_last_shared"],
            "q_rows": plan["q_rows"], "box_threads": (256 // t["bw"]) * t["bw"]}


def with_staging(after: dict, code: List[tuple], shape, fplan: dict) -> Optional[dict]:
    """The tensor-core forward per block and round of cch input channels, staging included:
    the loop model of forward_rows (one warp, one channel, all oct output channels) times the
    warps with pixels and cch, plus the box and Q staging instructions of the round (all 8
    warps, issue-bound), with the useful tanh scaled by the share of the warps' pixel slots
    inside the image."""
    costs = mma_staging_costs(code)
    if costs is None:
        return None
    plan = mma_forward_geometry(shape, fplan)
    kk, cch = 16 * plan["ks"], plan["cch"]
    if costs["q_elems_per_store"] == 8 and costs.get("q_packed"):
        q_stores = cch * plan["q_rows"] * kk / 8  # the packed rows, 16 bytes a copy
    else:
        q_stores = plan["oct"] * cch * kk * kk / costs["q_elems_per_store"]  # built per round: all rows
    staging = cch * plan["box"] / plan["box_threads"] * costs["box_per_elem"] + q_stores / 256 * costs["q_per_store"]
    # Per block and round: `warps` warps run the loop, all 8 stage (the staging figures are
    # per thread of 256); the floor counts the useful pixels of the warps' 16-pixel slots.
    w = plan["warps"]
    issue = (w * cch * after["instr"] * after["instr_scale"] + 8 * staging) / ISSUE_PER_CLK
    cycles = max(issue, w * cch * after["mufu_tanh"] * after["mufu_scale"] * MUFU_CLK,
                 w * cch * after["hmma"] * after["mufu_scale"] * HMMA_CLK)
    floor = w * cch * after["floor_cycles"] * plan["pixel_use"]
    return {**plan, **costs, "staging_instr": staging, "cycles": cycles, "floor_cycles": floor,
            "pct_of_floor": 100.0 * floor / cycles}


def forward_floor_rows(kernels: Dict[str, List[tuple]], plans: Dict[tuple, dict]) -> List[dict]:
    """The forward as the planner runs it: tensor-core kernel for 16-bit (with its staging,
    with_staging), scalar for float32 (loop model only)."""
    shapes = {s.name: s for s in SPEC_SHAPES}
    out = []
    for r in forward_rows(kernels, plans):
        plan = plans[r["shape"], r["dtype"], "none"]
        mma = r["planner"]["kernel"] == "tensor-core"
        chosen = r.get("after") if mma else r.get("before")
        row = {"shape": r["shape"], "dtype": r["dtype"], "pass": "forward", "kernels": plan["kernels"],
               "kernel": chosen["kernel"] if chosen else None, "pct_of_floor": r["planner"]["pct_of_floor"],
               "pct_loop_only": r["planner"]["pct_of_floor"]}
        if mma and chosen:
            st = with_staging(chosen, kernels[chosen["kernel"]], shapes[r["shape"]], plan)
            row["staging"] = st
            row["pct_of_floor"] = st["pct_of_floor"] if st else None
        out.append(row)
    return out


FLOOR_SECTIONS.append(forward_floor_rows)


def fwdbwd_floor_rows(kernels: Dict[str, List[tuple]], plans: Dict[tuple, dict]) -> List[dict]:
    """Forward + backward (16-bit), from backward_rows (the fused backward's section below, its
    loop-only model): per SPEC shape and dtype the gradients training needs (SPEC section 3:
    input_grad false for the first layers) and, where that differs, all gradients."""
    fwd = forward_rows(kernels, plans)
    out = []
    for input_grad in (False, True):
        for r in backward_rows(kernels, fwd, plans, input_grad):
            shape = next(s for s in SPEC_SHAPES if s.name == r["shape"])
            if not input_grad and training_input_grad(shape):
                continue  # training needs every gradient: the all-gradients row is the only one
            chosen = r.get("after") or r.get("before")
            pct = chosen["pct_of_floor"] if chosen else None
            out.append({"shape": r["shape"], "dtype": r["dtype"], "pass": "forward+backward",
                        "input_grad": input_grad, "kernels": r["kernels"],
                        "kernel": " + ".join(r["kernels"]), "pct_of_floor": pct, "pct_loop_only": pct})
    order = {s.name: i for i, s in enumerate(SPEC_SHAPES)}
    return sorted(out, key=lambda row: (order[row["shape"]], row["dtype"], row["input_grad"]))


FLOOR_SECTIONS.append(fwdbwd_floor_rows)


def floor_rows(kernels: Dict[str, List[tuple]], plans: Dict[tuple, dict]) -> List[dict]:
    """Every section's rows, in section order."""
    return [row for section in FLOOR_SECTIONS for row in section(kernels, plans)]

# --- forward + backward (the fused tensor-core backward) ------------------------------------
#
# Same rates and the same per-loop model as above, per tanh evaluation (one (o, c, pixel, uv)),
# against the SPEC section 4 floor of forward + backward (benchmarks/floors.py: case_floor):
# forward max(1 tanh / 32, (T + 1) MACs / 2048) SM cycles, backward max(1 tanh / 32,
# (3 T + 1) MACs / 2048), or (2 T + 1) without the input's gradient (16-bit types: packed tanh
# 32 per SM clock, dense wgmma 2048 MACs).
#   before: scalar forward + scalar backward = grad_input kernel (its loop around MUFU.TANH,
#           32 tanh per trip; only with the input's gradient) + grad_weight kernel (likewise)
#           + its dQ reduction on the FMA units, at least (T + 1) FFMA per tanh (a lower
#           bound: its loop is not modelled);
#   after:  tensor-core forward + the fused backward the planner picks (bwd_mma<t, KS, tail,
#           grads>: grads 3 = all, 2 = weight only), per (o, c) pair and 128-pixel tile (8 warps
#           of 16 pixels), with the planner's output channels per round (oct):
#           - odd square kernels with oct >= 2 (kernels/backward_mma.cuh kPaired): the paired
#             loop (two output channels a trip, taps 0..T-2; normalised to one trip by its HMMA
#             count if ptxas unrolled it) / 2, plus the code between it and the one-channel loop
#             (the shared last-tap tile: tap T-1 of the round's channels, and that loop's
#             set-up), once per round of oct channels;
#           - otherwise (depthwise: one channel per block) the one-channel loop, all taps;
#           - dQ (with the weight's gradient): per channel, KS x ceil(tiles / 2) units of 8
#             pixel k16-steps (tiles: n8 tap tiles, T / 8 paired, ceil(T / 8) otherwise; a
#             unit with two tiles runs the two-tile loop), plus KS shared-tile units per round;
#             each loop normalised to one k-step.
# Staging (im2col, Q, the col2im gather), the dQ units' accumulation into shared memory,
# barriers and occupancy are not modelled.
BWD_TILE_PIXELS = 128  # kernels/forward_mma.cuh: kMmaPixels
FLOOR_TANH_PER_CLK, FLOOR_MMA_MACS_PER_CLK = 32, 2048


def _cycles(c: dict, scale: float = 1.0) -> float:
    return scale * model(c, 1, 1)["cycles"]


def _scalar_loop_per_tanh(code: List[tuple]) -> Optional[float]:
    body = innermost_loop(code, "MUFU.TANH")
    if not body:
        return None
    c = count(body)
    return _cycles(c) / (32.0 * c["mufu_tanh"])


def fwdbwd_floor_per_tanh(T: int, input_grad: bool = True) -> float:
    fwd = max(1.0 / FLOOR_TANH_PER_CLK, (T + 1) / FLOOR_MMA_MACS_PER_CLK)
    bwd = max(1.0 / FLOOR_TANH_PER_CLK, ((3 if input_grad else 2) * T + 1) / FLOOR_MMA_MACS_PER_CLK)
    return fwd + bwd


def _single_hmma(T: int, ks: int, dx: bool = True) -> int:
    """HMMA per output channel and warp in the one-channel loop: sigma (KS per n8 tile with a
    real column) and, with dX, 2 per K n-pair with a real column, per uv k16-step."""
    n_np = math.ceil(T / 16)
    sigma = sum(ks * (1 + (16 * np_ + 8 < T)) for np_ in range(n_np))
    return sigma + (n_np * 2 * math.ceil(T / 16) if dx else 0)


def _paired_hmma(T: int, ks: int, dx: bool = True) -> int:
    """HMMA per trip (two output channels) of the paired loop: per tap tile j < T // 8, sigma
    (2 KS) and, with dX, 2 per K n-pair with a real column."""
    return (T // 8) * (2 * ks + (2 * math.ceil(T / 16) if dx else 0))


def _dq_loops(code: List[tuple]) -> Dict[str, tuple]:
    """kind -> (counts, k-steps) of the fused backward's dQ loops (innermost loops with HMMA and
    no MUFU.TANH): 'last' (B by plain ldmatrix: the shared tile), 'two' (two HMMA per step),
    'one'; per kind the most unrolled loop."""
    out: Dict[str, tuple] = {}
    spans = _loop_spans(code)
    inner = [b for a, e, b in spans if not any((a2, e2) != (a, e) and a <= a2 and e2 <= e for a2, e2, _ in spans)]
    for body in inner:
        c = count(body)
        if not c["hmma"] or c["mufu_tanh"]:
            continue
        plain = sum(1 for i in body if "LDSM.16.M88" in i)
        trans = sum(1 for i in body if "LDSM.16.MT88" in i)
        if plain:
            kind, steps = "last", plain
        else:
            steps = trans // 2
            kind = "two" if c["hmma"] == 2 * steps else "one"
        if steps and (kind not in out or steps > out[kind][1]):
            out[kind] = (c, steps)
    return out


def _mufu_loop_spans(code: List[tuple]) -> List[tuple]:
    spans = [s for s in _loop_spans(code) if any("MUFU.TANH" in i for i in s[2])]
    inner = [s for s in spans if not any(o is not s and s[0] <= o[0] and o[1] <= s[1] for o in spans)]
    return sorted(inner, key=lambda s: s[0])


def fused_backward_cycles(code: List[tuple], T: int, oct_: int, input_grad: bool = True,
                          weight_grad: bool = True) -> Optional[dict]:
    """SM cycles per (o, c) pair and 128-pixel tile of bwd_mma with oct output channels per
    round and the given gradients (see the comment above), with the loops it counted; None if
    the SASS lacks them."""
    ks = math.ceil((T + 1) / 16)
    spans = _mufu_loop_spans(code)
    dq = _dq_loops(code) if weight_grad else {}
    paired = T in (1, 9, 25, 49) and oct_ >= 2 and len(spans) >= 2 and T > 1
    steps = BWD_TILE_PIXELS // 16
    if paired:
        (_, end_p, body_p), (start_s, _, _) = spans[0], spans[1]
        cp = count(body_p)
        per_trip = 1.0 / max(1, round(cp["hmma"] / _paired_hmma(T, ks, input_grad)))
        seg = count([i for a, i in code if end_p < a < start_s])
        warp = _cycles(cp, per_trip) / 2 + _cycles(seg) / oct_
        tiles, loop, extra = T // 8, cp, {"round": seg}
    else:
        if not spans:
            return None
        loop = count(spans[-1][2])
        warp = _cycles(loop, 1.0 / max(1, round(loop["hmma"] / _single_hmma(T, ks, input_grad))))
        tiles, extra = math.ceil(T / 8), {}
    need = (["two"] if tiles >= 2 else []) + (["one"] if tiles % 2 else []) + (["last"] if paired else [])
    if weight_grad and any(k not in dq for k in need):
        return None
    per_step = {k: _cycles(c) / n for k, (c, n) in dq.items()}
    dq_c = ks * steps * ((tiles // 2) * per_step.get("two", 0.0) + (tiles % 2) * per_step.get("one", 0.0))
    if paired and weight_grad:
        dq_c += ks * steps * per_step["last"] / oct_
    return {"tile_cycles": 8 * warp + dq_c, "loop": loop, "dq_cycles": dq_c, "paired": paired,
            "dq_loops": {k: c for k, (c, _) in dq.items()}, **extra}


def backward_rows(kernels: Dict[str, List[tuple]], fwd: List[dict], plans: Dict[tuple, dict],
                  input_grad: bool = True) -> List[dict]:
    """Forward + backward per SPEC shape and 16-bit dtype with or without the input's gradient
    (the weight's always): 'before' the scalar kernels, 'after' the planner's plan (the fused
    tensor-core backward), and the kernels the planner runs (forward, then backward)."""
    grads = "both" if input_grad else "weight"
    rows = []
    for shape in SPEC_SHAPES:
        T, k = shape.k * shape.k, shape.k
        for dtype, tname in (("bfloat16", "bf16"), ("float16", "half")):
            f = next(r for r in fwd if r["shape"] == shape.name and r["dtype"] == dtype)
            bplan = plans[shape.name, dtype, grads]
            row = {"shape": shape.name, "dtype": dtype, "input_grad": input_grad,
                   "kernels": plans[shape.name, dtype, "none"]["kernels"] + bplan["kernels"],
                   "floor_cycles_per_tanh": fwdbwd_floor_per_tanh(T, input_grad)}
            aw = {3: 9, 5: 25, 7: 28}[k]  # kernels/planner.cuh: static_aw
            dx = _scalar_loop_per_tanh(kernels.get(f"bwd_input<{tname}, int, {k}, {k}>", [])) if input_grad else 0.0
            dw = _scalar_loop_per_tanh(kernels.get(f"bwd_weight<{tname}, int, {k}, {k}, {aw}>", []))
            fb = f.get("before")
            if fb and dx is not None and dw is not None:
                fwd_c = fb["cycles"] / (fb["floor_cycles"] * 32)
                bwd_c = dx + dw + (T + 1) / (FFMA_PER_CLK * 32)
                row["before"] = {"fwd": fb["kernel"], "fwd_cycles_per_tanh": fwd_c, "bwd_cycles_per_tanh": bwd_c,
                                 "pct_of_floor": 100.0 * row["floor_cycles_per_tanh"] / (fwd_c + bwd_c)}
            fa = f.get("after")
            if bplan["mma"] and fa:
                name = bplan["kernels"][0]
                b = fused_backward_cycles(kernels.get(name, []), T, bplan["oct"], input_grad, True)
                if b:
                    bwd_c = b["tile_cycles"] / (BWD_TILE_PIXELS * T)
                    fwd_c = fa["cycles"] / (fa["floor_cycles"] * 32)
                    row["after"] = {"fwd": fa["kernel"], "bwd": name, "oct": bplan["oct"], "pair_loop": b["loop"],
                                    "paired": b["paired"], "round": b.get("round"), "dq_loops": b["dq_loops"],
                                    "dq_cycles": b["dq_cycles"], "fwd_cycles_per_tanh": fwd_c,
                                    "bwd_cycles_per_tanh": bwd_c,
                                    "pct_of_floor": 100.0 * row["floor_cycles_per_tanh"] / (fwd_c + bwd_c)}
            rows.append(row)
    return rows


def backward_markdown(rows: List[dict]) -> str:
    out = ["| shape | dtype | input grad | f+b floor, SM cycles / tanh | before: fwd + bwd cycles / tanh | "
           "% of floor | after: kernel (oct) | channel loop instr / HMMA / MUFU.TANH (per trip) | "
           "per round (shared tile) instr | dQ cycles per pair and tile | fwd + bwd cycles / tanh | % of floor |",
           "|---|---|---|---:|---:|---:|---|---|---|---:|---:|---:|"]
    for r in rows:
        b, a = r.get("before"), r.get("after")
        bs = (f"{b['fwd_cycles_per_tanh']:.3f} + {b['bwd_cycles_per_tanh']:.3f} | {b['pct_of_floor']:.0f}%"
              if b else "- | -")
        if a:
            lp = a["pair_loop"]
            kind = "paired" if a["paired"] else "one channel"
            rnd = str(a["round"]["instr"]) if a.get("round") else "-"
            as_ = (f"`{a['bwd']}` ({a['oct']}) | {kind}: {lp['instr']} / {lp['hmma']} / {lp['mufu_tanh']} | {rnd} | "
                   f"{a['dq_cycles']:.0f} | {a['fwd_cycles_per_tanh']:.3f} + {a['bwd_cycles_per_tanh']:.3f} | "
                   f"{a['pct_of_floor']:.0f}%")
        else:
            as_ = "- | - | - | - | - | -"
        out.append(f"| {r['shape']} | {r['dtype']} | {'yes' if r['input_grad'] else 'no'} | "
                   f"{r['floor_cycles_per_tanh']:.4f} | {bs} | {as_} |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cuobjdump", required=True)
    ap.add_argument("--obj", action="append", required=True)
    ap.add_argument("--planner", help="the CPU emulation binary (testing/emulate_kernels.cpp) whose `plan` mode "
                    "answers for the C++ planner (default: build it, benchmarks/floor_report.py build_planner)")
    ap.add_argument("--md")
    ap.add_argument("--json")
    args = ap.parse_args()
    kernels = read_sass(args.cuobjdump, args.obj)
    if not args.planner:
        from .floor_report import build_planner

        args.planner = build_planner()
    plans = read_plans(args.planner)
    rows = forward_rows(kernels, plans)
    text = markdown(rows)
    print(text)
    bwd_rows = [r for grad in (False, True) for r in backward_rows(kernels, rows, plans, grad)]
    bwd_text = ("Forward + backward, 16-bit (before: scalar forward and backward; after: tensor-core forward "
                "and the fused tensor-core backward):\n\n" + backward_markdown(bwd_rows))
    print(bwd_text)
    if args.md:
        with open(args.md, "w") as f:
            f.write("Static model of the forward kernels on sm_90 (H100/H200), expected % of the SPEC floor; "
                    "an upper bound from the SASS instruction mix, not a measurement (benchmarks/static_model.py)."
                    "\n\n" + text + "\n" + bwd_text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": __doc__, "rows": rows, "fwdbwd_rows": bwd_rows,
                       "floor_rows": floor_rows(kernels, plans)}, f, indent=1)  # what --floors prints
    return 0


if __name__ == "__main__":
    sys.exit(main())
