"""`python -m benchmarks --floors` (benchmarks/floor_report.py): the static model's expected
% of the floor per SPEC shape and dtype, from the SASS of sm_90 objects and the C++ planner's
decisions. The whole report, built from real objects and the real planner, is checked by
.ci/compile_cuda.sh (floor_report --check, which uses the objects it has just built); these
tests check its parts without nvcc: the rows it must hold, the planner requests, the model."""

from __future__ import annotations

import sys

import pytest

from benchmarks import floor_report, sass, static_model
from benchmarks.shapes import SPEC_SHAPES


def _report_rows(key=None, change=None):
    """A complete floor report as check_rows wants it (synthetic percentages); the row of key
    (shape, dtype, pass, input_grad) is updated with change, or left out when change is None."""
    rows = []
    for shape in SPEC_SHAPES:
        train = static_model.training_input_grad(shape)
        for dtype, tname in (("bfloat16", "bf16"), ("float16", "half"), ("float32", "float")):
            fwd = [f"fwd<float, int, {shape.k}, {shape.k}>"] if dtype == "float32" else [
                f"pack_q_mma<1, {tname}>", f"fwd_mma<{tname}, 1, 1, true>"]
            keys = [(shape.name, dtype, "forward", None)]
            if dtype != "float32":
                keys += [(shape.name, dtype, "forward+backward", g) for g in sorted({train, True})]
            for k in keys:
                row = {"shape": k[0], "dtype": dtype, "pass": k[2], "kernels": fwd, "pct_of_floor": 40.0,
                       "pct_loop_only": 50.0}
                if k[2] == "forward+backward":
                    row.update(input_grad=k[3], kernels=fwd + [f"bwd_mma<{tname}, 1, 1, {3 if k[3] else 2}>"],
                               pct_loop_only=40.0)
                if k == key:
                    if change is None:
                        continue
                    row.update(change)
                rows.append(row)
    return rows


def test_check_rows_wants_every_shape_gradient_set_and_kernel():
    """floor_report.check_rows (run on the real report by .ci/compile_cuda.sh): the first layers
    have a forward+backward row without the input's gradient (weight-only kernel, grads 2) and
    one with all gradients (grads 3); the other shapes one, with all; 16-bit rows name the
    tensor-core kernels, and every percentage is in (0, 100] with staging never faster."""
    rows = _report_rows()
    assert floor_report.check_rows(rows) == []
    assert len(rows) == 5 * 3 + 5 * 2 + 2 * 2  # forward, f+b with all gradients, first layers' weight only
    lenet_train = ("lenet-mnist", "bfloat16", "forward+backward", False)
    cases = {
        lenet_train: None,  # the training row of a first layer is missing
        ("resnet-stem", "float16", "forward+backward", True): None,  # its all-gradients row too
        ("mid-64", "bfloat16", "forward+backward", True): {"kernels": ["fwd_mma<bf16, 1, 1, true>",
                                                                        "bwd_input<bf16, int, 3, 3>"]},
        ("mid-64", "float32", "forward", None): {"kernels": ["fwd_mma<float, 1, 1, true>"]},
        ("depthwise-k7", "float16", "forward", None): {"pct_of_floor": 60.0},  # above its loop-only model
        ("depthwise-256", "bfloat16", "forward+backward", True): {"pct_of_floor": None},
    }
    for key, change in cases.items():
        problems = floor_report.check_rows(_report_rows(key, change))
        assert len(problems) == 1 and key[0] in problems[0], (key, problems)
    wrong = _report_rows(lenet_train, {"kernels": ["fwd_mma<bf16, 2, 3, true>", "bwd_mma<bf16, 2, 3, 3>"]})
    assert "computes other gradients" in " ".join(floor_report.check_rows(wrong))
    assert floor_report.check_rows(rows + [dict(rows[0])]) == ["1 duplicate row(s)"]


def test_read_plans_asks_the_planner_tool_for_every_case(tmp_path):
    """static_model.read_plans: one request line per (SPEC shape, dtype, gradients) with the
    device limits, one JSON plan back per line; a plan the planner refuses is an error naming
    the case."""
    log = tmp_path / "requests.txt"
    tool = tmp_path / "planner"
    tool.write_text(f"""#!{sys.executable}
import json, sys
assert sys.argv[1:] == ["plan"]
lines = sys.stdin.read().splitlines()
open({str(log)!r}, "w").write("\\n".join(lines))
for line in lines:
    kv = dict(w.split("=") for w in line.split())
    if kv["grads"] == "input" and kv["C"] == "1":
        print(json.dumps({{"error": "no plan: input 1 x 1"}}))
    else:
        print(json.dumps({{"kernels": ["k_" + kv["dtype"] + "_" + kv["grads"]], "oct": int(kv["O"])}}))
""")
    tool.chmod(0o755)
    with pytest.raises(RuntimeError, match=r"lenet-mnist.*input.*no plan: input 1 x 1"):
        static_model.read_plans(str(tool))
    requests = log.read_text().splitlines()
    assert len(requests) == len(SPEC_SHAPES) * 3 * 4
    assert all("sms=132 optin=232448 per_sm=233472" in r and "arch=90" in r for r in requests)
    shapes = [s for s in SPEC_SHAPES if s.C > 1]
    plans = static_model.read_plans(str(tool), shapes=shapes)
    assert len(plans) == len(shapes) * 3 * 4
    assert plans["mid-64", "bfloat16", "weight"] == {"kernels": ["k_bf16_weight"], "oct": 64}
    assert plans["depthwise-k7", "float32", "none"]["kernels"] == ["k_f32_none"]


def test_floors_without_nvcc_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))  # empty: no bin/nvcc
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(floor_report, "find_cuobjdump", lambda: "cuobjdump")
    assert floor_report.main(cache_dir=str(tmp_path / "cache")) == 2
    assert "nvcc not found" in capsys.readouterr().err


def test_floors_without_cuobjdump_says_so(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` fails: no bundled cuobjdump
    assert floor_report.main(objs=[str(tmp_path / "x.o")]) == 2
    assert "cuobjdump not found" in capsys.readouterr().err


def test_floors_missing_object_is_named(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(floor_report, "find_cuobjdump", lambda: "cuobjdump")
    assert floor_report.main(objs=[str(tmp_path / "missing.o")]) == 2
    assert "missing.o: no such file" in capsys.readouterr().err


def test_fwdbwd_section_rows_per_gradient_set(monkeypatch):
    """The forward+backward rows come from static_model.backward_rows, per set of gradients:
    the first layers (SPEC section 3: their input never requires grad) get a row without the
    input's gradient and one with all; the other shapes one, with all. Each row carries the
    kernels of the planner's forward and backward plans."""
    def fake_backward_rows(kernels, fwd, plans, input_grad):
        return [{"shape": s.name, "dtype": "bfloat16", "input_grad": input_grad,
                 "kernels": ["fwd_mma<bf16, 1, 1, true>", f"bwd_mma<bf16, 1, 1, {3 if input_grad else 2}>"],
                 "after": {"pct_of_floor": 30.0 + input_grad}} for s in SPEC_SHAPES]

    monkeypatch.setattr(static_model, "forward_rows", lambda kernels, plans: [])
    monkeypatch.setattr(static_model, "backward_rows", fake_backward_rows)
    rows = static_model.fwdbwd_floor_rows({}, {})
    got = [(r["shape"], r["input_grad"], r["pct_of_floor"]) for r in rows]
    assert got == [("lenet-mnist", False, 30.0), ("lenet-mnist", True, 31.0), ("resnet-stem", False, 30.0),
                   ("resnet-stem", True, 31.0), ("mid-64", True, 31.0), ("depthwise-256", True, 31.0),
                   ("depthwise-k7", True, 31.0)]
    assert rows[0]["kernels"] == ["fwd_mma<bf16, 1, 1, true>", "bwd_mma<bf16, 1, 1, 2>"]
    assert rows[0]["pass"] == "forward+backward" and rows[0]["kernel"] == " + ".join(rows[0]["kernels"])
    assert static_model.fwdbwd_floor_rows in static_model.FLOOR_SECTIONS


def _sass(loops):
    """Synthetic SASS: each loop is (opcodes, branches in the body), laid out one after another,
    each closed by a backward BRA to its first instruction."""
    code, addr = [], 0
    for ops, branches in loops:
        start = addr
        for op in ops + ["BRA 0x9999"] * branches:
            code.append((addr, op))
            addr += 16
        code.append((addr, f"@P0 BRA 0x{start:x}"))
        addr += 16
    return code


def test_forward_loop_choice_follows_the_block_width():
    """static_model.mma_forward_loop: the one-channel loop for depthwise, the unrolled
    8-channel loop (fewest branches) for 8 or more channels, the general loop otherwise."""
    from benchmarks import static_model as sm

    single = (["LDSM", "HMMA.16816", "MUFU.TANH.BF16"], 1)
    full = (["LDSM"] + ["HMMA.16816"] * 9 + ["MUFU.TANH.BF16"] * 36, 1)
    general = (["LDSM"] + ["HMMA.16816"] * 9 + ["MUFU.TANH.BF16"] * 36 + ["ISETP"] * 8, 9)
    code = _sass([single, full, general])
    loops = sm.innermost_loops(code, "HMMA")
    assert [len(b) for b in loops] == [5, 48, 64]
    assert sm.mma_forward_loop(code, 1) == (loops[0], 1)
    assert sm.mma_forward_loop(code, 64) == (loops[1], 8)
    assert sm.mma_forward_loop(code, 6) == (loops[2], 8)
    # A loop around both (the channel rounds) is not innermost.
    outer = code + [(code[-1][0] + 16, "@P1 BRA 0x0")]
    assert len(sm.innermost_loops(outer, "HMMA")) == 3
    # Older kernels: one loop, covering 8 output channels.
    assert sm.mma_forward_loop(_sass([general]), 1)[1] == 8


def test_fused_backward_model_paired_and_one_channel():
    """static_model.fused_backward_cycles: with 8 channels per round (T = 9) the paired loop per
    two channels, the round's straight code (the shared last-tap tile) per 8 and the dQ loops
    per k-step; one channel per block (depthwise) takes the one-channel loop and all tap tiles."""
    from benchmarks import static_model as sm

    code, addr = [], 0

    def block(ops, loop):
        nonlocal addr
        start = addr
        for op in ops:
            code.append((addr, op))
            addr += 16
        if loop:
            code.append((addr, f"@P0 BRA 0x{start:x}"))
            addr += 16

    hmma, mufu = "HMMA.16816.F32.BF16", "MUFU.TANH"
    block(["LDSM.16.M88.4"] + [hmma] * 4 + [mufu] * 8 + ["FFMA"] * 59, True)  # paired: 73 instr
    block([mufu] * 4 + [hmma] * 3 + ["IMAD"] * 73, False)  # the round's straight code: 80
    block([hmma] * 4 + [mufu] * 6 + ["FFMA"] * 50, True)  # one channel: 61
    block(["LDSM.16.MT88.4"] * 32 + [hmma] * 16, True)  # dQ 'one': 16 k-steps
    block(["LDSM.16.MT88.4"] * 32 + [hmma] * 32, True)  # dQ 'two'
    block(["LDSM.16.MT88.4"] * 16 + ["LDSM.16.M88.4"] * 16 + [hmma] * 16, True)  # dQ 'last'
    paired = sm.fused_backward_cycles(code, 9, 8)
    assert paired["paired"] and paired["round"]["instr"] == 80
    # 8 warps x (73 / 4 / 2 + 80 / 4 / 8) + 8 k-steps x (2 cycles ('one') + 2 / 8 ('last'))
    assert paired["tile_cycles"] == pytest.approx(8 * (73 / 8 + 20 / 8) + 8 * (2 + 2 / 8))
    # The planner's oct sets the round: 4 channels share the round's code and the 'last' unit.
    four = sm.fused_backward_cycles(code, 9, 4)
    assert four["tile_cycles"] == pytest.approx(8 * (73 / 8 + 20 / 4) + 8 * (2 + 2 / 4))
    # Weight only: no dX HMMA, so the 4 HMMA of the paired loop are two trips (sigma: 2 a trip).
    weight_only = sm.fused_backward_cycles(code, 9, 8, input_grad=False)
    assert weight_only["tile_cycles"] == pytest.approx(8 * (73 / 16 + 20 / 8) + 8 * (2 + 2 / 8))
    # Input only: no dQ, and no dQ loop needed.
    input_only = sm.fused_backward_cycles(code[:-49], 9, 8, weight_grad=False)
    assert input_only["dq_cycles"] == 0 and input_only["tile_cycles"] == pytest.approx(8 * (73 / 8 + 20 / 8))
    depthwise = sm.fused_backward_cycles(code, 9, 1)
    assert not depthwise["paired"] and depthwise["loop"]["instr"] == 61
    # 8 warps x 61 / 4 + 8 k-steps x 4 cycles ('two': tap tiles 0 and 1)
    assert depthwise["tile_cycles"] == pytest.approx(8 * 61 / 4 + 8 * 4)
    # A kernel without the dQ loop it needs is not modelled.
    assert sm.fused_backward_cycles(code[:-49], 9, 8) is None


# --- benchmarks/sass.py: the one SASS / ptxas parser and CI's SASS check ------------------

_PTXAS_LOG = """\
ptxas info    : Compiling entry function 'K_fwd' for 'sm_80'
ptxas info    : Function properties for K_fwd
    0 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers
ptxas info    : Compiling entry function 'K_fwd' for 'sm_90'
ptxas info    : Function properties for K_fwd
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers
ptxas info    : Compiling entry function 'K_bwd' for 'sm_90'
ptxas info    : Function properties for K_bwd
    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers
"""


def test_parse_ptxas_per_architecture():
    """Registers and spill bytes (stores + loads) per kernel, of the architecture asked for."""
    assert sass.parse_ptxas(_PTXAS_LOG) == {"K_fwd": {"regs": 168, "spill": 0}, "K_bwd": {"regs": 255, "spill": 20}}
    assert sass.parse_ptxas(_PTXAS_LOG, "sm_80") == {"K_fwd": {"regs": 255, "spill": 8}}
    assert sass.log_archs(_PTXAS_LOG) == ["sm_80", "sm_90"]


def test_sass_check_catches_spills_f32_tanh_and_missing_variants(monkeypatch):
    """The SASS check fails on each thing CI must catch, and passes the clean set. Kernels are
    keyed by mangled name (here the short name itself), so that two files' copies of one
    kernel are both checked."""
    monkeypatch.setattr(sass, "demangle", lambda name: name.split("@")[0])
    fwd = [(0, "HMMA.16816.F32 R4, R8, R12, R4"), (16, "MUFU.TANH.F16 R1, R2"), (32, "MUFU.TANH.BF16 R1, R2")]
    bwd = [(0, "HMMA.16816.F32 R4, R8, R12, R4"), (16, "MUFU.TANH R1, R2")]
    assert sass.unit_counts(fwd) == {"hmma": 1, "tanh": 2, "tanh16": 2}
    assert sass.unit_counts(bwd) == {"hmma": 1, "tanh": 1, "tanh16": 0}
    kernels = {"fwd_mma<half, 1, 1, true>": fwd, **{f"bwd_mma<bf16, 1, 1, {g}>": bwd for g in (1, 2, 3)},
               "reduce_splits@f16": [], "reduce_splits@bf16": []}
    regs = {k: {"regs": 128, "spill": 0} for k in kernels}
    rows, failures = sass.check(regs, {}, kernels)
    assert failures == [] and [r[0] for r in rows] == sorted(sass.demangle(k) for k in kernels)

    def fails(regs=regs, other=None, kernels=kernels):
        return " | ".join(sass.check(regs, other or {}, kernels)[1])

    assert "bwd_mma<bf16, 1, 1, 3>: spills 20 bytes (sm_90)" in fails(
        regs={**regs, "bwd_mma<bf16, 1, 1, 3>": {"regs": 255, "spill": 20}})
    assert "reduce_splits: spills 8 bytes (sm_90)" in fails(regs={**regs, "reduce_splits@bf16": {"regs": 9, "spill": 8}})
    assert "spills 8 bytes (sm_80)" in fails(other={"sm_80": {"fwd_mma<half, 1, 1, true>": {"spill": 8}}})
    assert "MUFU.TANH 16-bit 1 of 2" in fails(kernels={**kernels, "fwd_mma<half, 1, 1, true>": fwd[:2] + bwd[1:]})
    assert "no HMMA" in fails(kernels={**kernels, "fwd_mma<half, 1, 1, true>": fwd[1:]})
    missing = {k: v for k, v in kernels.items() if k != "bwd_mma<bf16, 1, 1, 2>"}
    assert "gradient variants [1, 3]" in fails(regs={k: v for k, v in regs.items() if k in missing}, kernels=missing)
    assert "no ptxas -v record" in fails(regs={k: v for k, v in regs.items() if k != "bwd_mma<bf16, 1, 1, 1>"})
    half_bwd = {**kernels, **{f"bwd_mma<half, 1, 1, {g}>": bwd for g in (1, 2, 3)}}
    assert "bwd_mma<half, 1, 1, 1>: MUFU.TANH 16-bit 0 of 1" in fails(
        regs={k: {"regs": 128, "spill": 0} for k in half_bwd}, kernels=half_bwd)
