"""scripts/gpu_session.sh without a GPU: its --dry-run plan must fit one 480 s device run,
and the summary's headline numbers must read the files the real run writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_session.sh"
STEPS = ["build", "register", "tests", "bench-mid64", "memcheck", "racecheck", "synccheck", "bench-rest"]

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_session_summary as summary  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "out"
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "OUT": str(out)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not out.exists(), "--dry-run must not write anything"
    return proc.stdout.splitlines()


def test_dry_run_plan_caps_fit_480_s(dry_run):
    steps = [re.match(r"\s+(?:\d+\.)?\s*(\S+)\s+cap\s+(\d+) s\s+\S", line) for line in dry_run]
    steps = [(m.group(1), int(m.group(2))) for m in steps if m]
    assert [name for name, _ in steps] == STEPS + ["slack"]
    assert all(cap > 0 for _, cap in steps)
    last = re.fullmatch(r"total (\d+) s", dry_run[-1])
    assert last, dry_run[-1]
    assert int(last.group(1)) == sum(cap for _, cap in steps) <= 480


def test_dry_run_plan_says_what_each_step_does(dry_run):
    text = "\n".join(dry_run)
    assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in text  # memcheck outside the caching allocator
    assert "no -x" in text and "junit.xml" in text.lower()
    assert "bf16/fp16/fp32" in text


def test_headlines_from_junit_and_bench_json(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text('<testsuites><testsuite name="pytest" tests="7" failures="1" errors="0" skipped="2">'
                   "</testsuite></testsuites>")
    assert summary.junit(str(xml)) == "4 passed, 1 failed, 0 errors, 2 skipped"

    ok = {"impl": "native", "status": "ok", "fwd_s": 0.002, "fwdbwd_s": 0.008,
          "pct_floor_fwd": 41.26, "pct_floor_fwdbwd": 20.0}
    res = {"complete": False, "device": {"gpu": {"sm_clock_khz": 1_980_000, "clock_source": "nvidia-smi"}},
           "cases": [{"name": "mid-64", "N": 32, "dtype": "bfloat16", "results": [
               ok, {"impl": "triton", "status": "error", "reason": "boom"}, {"impl": "conv2d", "status": "ok"}]}]}
    path = tmp_path / "cuda-h200_mid64.json"
    path.write_text(json.dumps(res))
    lines = summary.bench(str(path))
    assert lines == ["mid-64 N=32 bfloat16 native: fwd 2 ms = 41.3% of floor, fwd+bwd 8 ms = 20.0% of floor",
                     "mid-64 N=32 bfloat16 triton: error (boom)",
                     "1 case(s) (run cut short); SM clock 1980 MHz from nvidia-smi"]


def test_headline_from_sanitizer_log(tmp_path):
    log = tmp_path / "memcheck.log"
    log.write_text("========= COMPUTE-SANITIZER\nok\n========= ERROR SUMMARY: 3 errors\n")
    assert summary.sanitizer(str(log)) == "ERROR SUMMARY: 3 errors"
