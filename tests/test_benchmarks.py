"""The benchmark suite's quick mode, end to end, so that it cannot rot.

One subprocess run of `python -m benchmarks --quick` on two small shapes, with a memory
cap that makes the eager reference run out of memory on one of them; then the JSON,
markdown and PNG it wrote are checked. About 30-60 s on a 2-core CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("tqdm")
pytest.importorskip("matplotlib")
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the checkout
    sys.path.insert(0, str(ROOT))
from benchmarks.shapes import GRADS_ALL, GRADS_TRAINING_FIRST_LAYER  # noqa: E402


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    # depthwise-k7 at N=1: the reference needs ~100 MiB above its inputs, native ~5 MiB,
    # so a 32 MiB cap makes exactly the reference run out of memory there.
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--device", "cpu",
           "--shapes", "lenet-mnist,depthwise-k7", "--backends", "native,reference,paper,conv2d",
           "--mem-cap-mb", "32", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = {p.suffix: p for p in out.iterdir()}
    assert set(files) == {".json", ".md", ".png"}, sorted(out.iterdir())
    assert "_quick" in files[".json"].name and files[".json"].name.startswith("cpu-")
    with open(files[".json"]) as f:
        return json.load(f), files, proc.stdout


def test_metadata(quick_run):
    res, _, _ = quick_run
    for key in ("schema", "date", "device", "versions", "settings", "cases", "wall_s"):
        assert key in res
    assert res["complete"] is True  # false in the copies written after each case
    assert res["device"]["type"] == "cpu" and res["device"]["name"]
    assert res["device"]["torch_threads"] >= 1 and res["device"]["cpu_model"]
    for key in ("python", "torch", "triton", "adaptive_conv_ext"):
        assert key in res["versions"]
    s = res["settings"]
    assert s["quick"] is True and s["reps"] == 3 and s["statistic"] == "median"
    # SPEC section 3: a first layer is timed without the input's gradient, then with all, labelled
    assert [(c["name"], c["input_grad"]) for c in res["cases"]] == [
        ("lenet-mnist", False), ("lenet-mnist", True), ("depthwise-k7", True)]
    assert [c["grads"] for c in res["cases"]] == [GRADS_TRAINING_FIRST_LAYER, GRADS_ALL, ""]


def test_cases_record_the_scaled_batch(quick_run):
    res, _, _ = quick_run
    for case in res["cases"]:
        assert case["N"] == 1 and case["N_spec"] in (256, 32)  # --quick: tiny N, and the SPEC's N beside it
        assert case["dtype"] == "float32"
        assert {"C", "O", "H", "W", "k", "pad", "groups"} <= set(case["shape"])
        assert case["tanh_evals_fwd"] > 0
        assert [r["impl"] for r in case["results"]] == ["native", "reference", "paper", "conv2d"]


def test_native_row(quick_run):
    res, _, _ = quick_run
    for case in res["cases"]:
        nat = case["results"][0]
        assert nat["status"] == "ok", nat
        assert nat["fwd_s"] > 0 and nat["fwdbwd_s"] > 0
        # 3 reps, or fewer within the budget (a busy machine) and a note that says so
        assert nat["reps"] == 3 or (1 <= nat["reps"] < 3 and "reps" in nat["note"]), nat
        assert nat["ratio_fwd"] == 1.0 and nat["ratio_fwdbwd"] == 1.0
        assert nat["memory"]["status"] == "ok"
        # RSS moves by pages and small blocks come from free heap: lenet at N=1 may read 0
        assert 0 <= nat["memory"]["fwd_bytes"] <= nat["memory"]["fwdbwd_bytes"] < 32 * 2**20
    assert res["cases"][-1]["results"][0]["memory"]["fwdbwd_bytes"] > 0  # depthwise-k7: MiBs of gradients


def test_other_rows(quick_run):
    res, _, _ = quick_run
    lenet, lenet_all, dw = ({r["impl"]: r for r in c["results"]} for c in res["cases"])
    for impl in ("reference", "paper", "conv2d"):
        r = lenet[impl]
        assert r["status"] == "ok", r
        assert r["fwd_s"] > 0 and r["fwdbwd_s"] > 0
        assert r["ratio_fwd"] == pytest.approx(r["fwd_s"] / lenet["native"]["fwd_s"])
    # the two adaptive implementations agree with the reference (conv2d is another operator)
    assert lenet["native"]["rel_err"] < 1e-5 and lenet["paper"]["rel_err"] < 1e-5
    assert "rel_err" not in lenet["conv2d"]
    # the reference holds sigma and K: more memory than native
    assert lenet["reference"]["memory"]["fwdbwd_bytes"] > lenet["native"]["memory"]["fwdbwd_bytes"]
    # skipped and out-of-memory are recorded, with a reason, and nothing is timed
    assert dw["paper"]["status"] == "skipped" and "groups" in dw["paper"]["reason"]
    assert dw["reference"]["status"] == "oom" and dw["reference"]["reason"]
    for r in (dw["paper"], dw["reference"]):
        assert "fwd_s" not in r and "ratio_fwd" not in r
    assert dw["conv2d"]["status"] == "ok"


def test_table_and_markdown(quick_run):
    _, files, stdout = quick_run
    assert "native (fused)" in stdout and "oom" in stdout and "skipped" in stdout
    md = files[".md"].read_text()
    # 4 implementation rows + 1 row of the native-vs-floor summary above them
    for grads in (GRADS_TRAINING_FIRST_LAYER, GRADS_ALL):
        assert md.count(f"| lenet-mnist, f+b: {grads} |") == 5
    assert "| depthwise-k7 |" in md
    assert f"[f+b: {GRADS_TRAINING_FIRST_LAYER}]" in stdout and f"[f+b: {GRADS_ALL}]" in stdout
    assert files[".png"].stat().st_size > 10_000


def test_gpu_floor_arithmetic():
    """The SPEC section 4 floor (GPU only at run time), on a made-up H100."""
    torch = pytest.importorskip("torch")
    if str(ROOT) not in sys.path:  # benchmarks/ is a top-level package of the checkout
        sys.path.insert(0, str(ROOT))
    from benchmarks import floors
    from benchmarks.shapes import SHAPES

    info = {"capability": [9, 0], "sm_count": 132, "sm_clock_khz": 1_980_000}
    shape = SHAPES["mid-64"]
    t = 32 * 64 * 64 * 9 * 56 * 56  # N*O*(C/g)*kH*kW*Ho*Wo
    assert shape.tanh_evals(32) == t
    f32 = floors.peak_rates(info, torch.float32)
    assert f32["tanh_per_s"] == pytest.approx(16 * 132 * 1.98e9)
    assert f32["fma_per_s"] == pytest.approx(128 * 132 * 1.98e9)
    f = floors.case_floor(shape, 32, torch.float32, f32, 3e12)
    assert f["fwd"]["tanh_s"] == pytest.approx(t / f32["tanh_per_s"])
    assert f["fwd"]["fma_s"] == pytest.approx(10 * t / f32["fma_per_s"])
    assert f["fwd_s"] == max(f["fwd"]["tanh_s"], f["fwd"]["fma_s"], f["fwd"]["bytes_s"])
    assert f["fwdbwd_s"] == pytest.approx(f["fwd_s"] + f["bwd"]["floor_s"])
    bf16 = floors.peak_rates(info, torch.bfloat16)
    assert bf16["tanh_per_s"] == pytest.approx(2 * f32["tanh_per_s"])  # packed tanh counts half
    assert floors.peak_rates({**info, "sm_clock_khz": 0}, torch.float32) is None


def test_results_json_is_whole_after_every_case(tmp_path):
    """The suite rewrites its JSON after each case: a run killed later keeps those cases."""
    from benchmarks.suite import write_json

    path = tmp_path / "r.json"
    results = {"cases": [{"name": "a"}]}
    write_json(str(path), results)
    assert json.loads(path.read_text()) == {"cases": [{"name": "a"}], "complete": False}
    results["cases"].append({"name": "b"})
    write_json(str(path), results)
    assert [c["name"] for c in json.loads(path.read_text())["cases"]] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left


def test_cpu_floor_arithmetic_and_report(quick_run):
    """SPEC section 4's CPU floor: flops of the case at the sgemm rate measured in the run."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import cpu_floor
    from benchmarks.shapes import SHAPES

    t = 32 * 64 * 64 * 9 * 56 * 56
    f = cpu_floor.case_floor(SHAPES["mid-64"], 32, 1e11)
    assert f["fwd_s"] == pytest.approx(2 * t * (9 + 1 + 10) / 1e11)
    assert f["fwdbwd_s"] == pytest.approx(2 * t * (4 * 9 + 4 + 20) / 1e11)
    # without the input's gradient the backward has no dX (k*k + 1 multiply-adds per sigma element)
    no_dx = cpu_floor.case_floor(SHAPES["mid-64"], 32, 1e11, input_grad=False)
    assert no_dx["fwd_s"] == f["fwd_s"] and no_dx["fwdbwd_s"] == pytest.approx(2 * t * (3 * 9 + 3 + 20) / 1e11)
    res, files, stdout = quick_run
    rate = res["device"]["cpu_floor"]
    assert rate["threads"] == res["device"]["torch_threads"] and rate["sgemm_1thread_flops"] > 1e9
    assert rate["rate_flops"] == pytest.approx(rate["threads"] * max(rate["sgemm_1thread_flops_samples"]))
    for case in res["cases"]:
        nat = next(r for r in case["results"] if r["impl"] == "native")
        assert case["floor"]["fwd_s"] > 0
        assert nat["pct_floor_fwd"] == pytest.approx(100 * case["floor"]["fwd_s"] / nat["fwd_s"])
        assert nat["pct_floor_fwdbwd"] == pytest.approx(100 * case["floor"]["fwdbwd_s"] / nat["fwdbwd_s"])
    assert "% floor fwd" in stdout
    assert "| native fwd ms | % floor fwd |" in files[".md"].read_text()
    # the CPU's FMA peak beside the sgemm floor, where this machine can measure it
    if rate["fma_peak_1thread_flops"] is not None:
        assert rate["fma_peak_isa"] in ("avx512", "avx2") and rate["fma_peak_1thread_flops"] > 1e9
        for case in res["cases"]:
            nat = next(r for r in case["results"] if r["impl"] == "native")
            peak = case["floor"]["fma_peak"]
            assert peak["rate_flops"] == pytest.approx(rate["threads"] * rate["fma_peak_1thread_flops"])
            assert nat["pct_peak_fwdbwd"] == pytest.approx(100 * peak["fwdbwd_s"] / nat["fwdbwd_s"])
        assert "% FMA peak fwd / f+b" in files[".md"].read_text()


def test_fma_peak_probe(monkeypatch):
    """fma_peak.py: the kernels' widest instruction set, narrowed by ATEN_CPU_CAPABILITY
    as the kernels are, and its floor arithmetic."""
    from benchmarks import cpu_floor, fma_peak
    from benchmarks.shapes import SHAPES

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert fma_peak.kernel_isa() is None and fma_peak.peak_flops() is None  # the portable build: no FMA peak
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert fma_peak.kernel_isa() in (None, "avx2")
    f = cpu_floor.case_floor(SHAPES["mid-64"], 32, 1e11, peak_flops=4e11)
    assert f["fma_peak"]["fwd_s"] == pytest.approx(f["fwd_s"] / 4)
    pct = cpu_floor.percentages(f, {"fwd_s": f["fwd_s"] * 2, "fwdbwd_s": f["fwdbwd_s"]})
    assert pct == pytest.approx({"pct_floor_fwd": 50, "pct_floor_fwdbwd": 100, "pct_peak_fwd": 12.5,
                                 "pct_peak_fwdbwd": 25})


def test_first_layer_backward_leaves_the_input_alone():
    """lenet-mnist's training case: its fwd+bwd fills the parameters' gradients, not the input's."""
    import torch

    from benchmarks import impls as I
    from benchmarks.runner import Runner
    from benchmarks.shapes import SHAPES

    shape = SHAPES["lenet-mnist"]
    assert [g for g, _ in shape.grad_variants()] == [False, True]
    assert [g for g, _ in SHAPES["mid-64"].grad_variants()] == [True]
    for input_grad in (False, True):
        inp = I.make_inputs(shape, 1, torch.float32, "cpu", input_grad=input_grad)
        for impl in ("native", "reference", "paper", "conv2d"):
            fn, params = I.build(impl, shape, inp)
            assert any(p is inp["x"] for p in params) == input_grad
            run = Runner(fn, params, inp["grad_out"])
            run.clear()
            run.fwdbwd()
            assert all(p.grad is not None for p in params)
            assert (inp["x"].grad is not None) == input_grad, impl
            inp["x"].grad = None


def _loaded_results(load):
    case = {"name": "lenet-mnist", "dtype": "float32", "grads": "", "N": 1, "N_spec": 256,
            "shape": dict(C=1, O=6, H=28, W=28, k=5, pad=2, groups=1), "results": [],
            "loadavg_1min_start": 0.5, "loadavg_1min_end": load}
    return {"device": {"torch_threads": 2}, "cases": [case]}


def test_table_warns_when_the_load_exceeds_the_cores_used():
    from benchmarks import report

    assert report.load_warning(_loaded_results(1.9)) == ""
    assert "LOADED" not in report.text_table(_loaded_results(1.9))
    warning = report.load_warning(_loaded_results(7.5))
    assert "WARNING" in warning and "7.5" in warning and "2 core(s)" in warning
    assert "LOADED: above the 2 core(s) used" in report.text_table(_loaded_results(7.5))


def test_results_go_to_an_untracked_directory_by_default():
    """A run never writes into the committed benchmarks/results/ unless --out says so."""
    from benchmarks.suite import parse_args

    out = Path(parse_args(["--device", "cpu"]).out)
    assert out == ROOT / "results"
    if (ROOT / ".git").exists():
        proc = subprocess.run(["git", "check-ignore", "-q", str(out / "x.json")], cwd=ROOT)
        assert proc.returncode == 0, "results/ must be ignored by git"
    assert parse_args(["--device", "cpu", "--out", "benchmarks/results"]).out == "benchmarks/results"
