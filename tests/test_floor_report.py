"""`python -m benchmarks --floors` (benchmarks/floor_report.py): the static model's expected
% of the floor per SPEC shape and dtype, from the SASS of sm_90 objects it builds with nvcc
(cached under build/sass_model). No GPU needed; nvcc is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import floor_report
from benchmarks.shapes import SPEC_SHAPES

ROOT = Path(__file__).resolve().parents[1]


def _nvcc_missing() -> str:
    try:
        floor_report.find_nvcc()
    except floor_report.ToolMissing as exc:
        return str(exc)
    return ""


@pytest.mark.skipif(bool(_nvcc_missing()), reason=f"no nvcc to build the sm_90 objects: {_nvcc_missing()}")
def test_floors_report_every_spec_shape_and_dtype():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--floors"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\| (\S+) \| (\w+) \| (forward\S*) \| `([^`]*)` \| (\d+)% \| (\d+)% \|", line)
        if m:
            rows[m.group(1), m.group(2), m.group(3)] = (m.group(4), int(m.group(5)), int(m.group(6)))
    for shape in SPEC_SHAPES:
        for dtype, tname in (("bfloat16", "bf16"), ("float16", "half"), ("float32", "float")):
            assert (shape.name, dtype, "forward") in rows, (shape.name, dtype, proc.stdout)
            kernel, pct, loop_only = rows[shape.name, dtype, "forward"]
            # the kernel the planner picks: tensor cores for 16-bit (T + 1 <= 64), scalar float32
            want = f"fwd_mma<{tname}, " if dtype != "float32" else f"fwd<float, int, {shape.k}, {shape.k}>"
            assert kernel.startswith(want), (shape.name, dtype, kernel)
            assert 0 < pct <= loop_only <= 100, (shape.name, dtype, pct, loop_only)  # staging only adds time


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


def test_fwdbwd_section_reports_the_backward_rows(monkeypatch):
    """The forward+backward rows come from static_model.backward_rows (the fused backward's
    section) as soon as the module has it: --floors then prints them without more wiring."""
    from benchmarks import static_model

    fake = [{"shape": "mid-64", "dtype": "bfloat16",
             "after": {"fwd": "fwd_mma<bf16, 1, 1>", "bwd": "bwd_mma<bf16, 1, 1>", "pct_of_floor": 33.0}},
            {"shape": "mid-64", "dtype": "float16"}]
    monkeypatch.setattr(static_model, "forward_rows", lambda kernels: [])
    monkeypatch.setattr(static_model, "backward_rows", lambda kernels, fwd: fake, raising=False)
    rows = static_model.fwdbwd_floor_rows({})
    assert rows[0] == {"shape": "mid-64", "dtype": "bfloat16", "pass": "forward+backward",
                       "kernel": "fwd_mma<bf16, 1, 1> + bwd_mma<bf16, 1, 1>", "pct_of_floor": 33.0,
                       "pct_loop_only": 33.0}
    assert rows[1]["pct_of_floor"] is None and rows[1]["kernel"] is None
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
    paired = sm.fused_backward_cycles(code, 9, 64)
    assert paired["paired"] and paired["round"]["instr"] == 80
    # 8 warps x (73 / 4 / 2 + 80 / 4 / 8) + 8 k-steps x (2 cycles ('one') + 2 / 8 ('last'))
    assert paired["tile_cycles"] == pytest.approx(8 * (73 / 8 + 20 / 8) + 8 * (2 + 2 / 8))
    depthwise = sm.fused_backward_cycles(code, 9, 1)
    assert not depthwise["paired"] and depthwise["loop"]["instr"] == 61
    # 8 warps x 61 / 4 + 8 k-steps x 4 cycles ('two': tap tiles 0 and 1)
    assert depthwise["tile_cycles"] == pytest.approx(8 * 61 / 4 + 8 * 4)
    # A kernel without the dQ loop it needs is not modelled.
    assert sm.fused_backward_cycles(code[:-49], 9, 64) is None
