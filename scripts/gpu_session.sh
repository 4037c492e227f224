#!/usr/bin/env bash
# One GPU session, run from the repository root on the GPU machine (Python 3.12,
# torch 2.11.0+cu130, nvcc 13.0, no network):
#   1. build and install the extension for sm_90 (pip, no build isolation);
#   2. check that the native CUDA kernels are registered (else the CUDA tests would skip);
#   3. pytest -x -q tests/                                   -> $OUT/tests.log
#   4. compute-sanitizer memcheck, then racecheck, on a small forward+backward
#   5. python -m benchmarks --device cuda --out $OUT
# Steps 1, 2, 4 and 5 log to $OUT/session.log (few files: $OUT holds at most 8).
# Every step runs even if an earlier one failed; $OUT/summary.txt lists each step's
# status; the exit code is non-zero if any step failed. Steps share a wall-clock budget
# (GPU_SESSION_BUDGET_S, default 540 s); each is cut off by `timeout` at its share.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/gpu_session_out}
mkdir -p "$OUT"
PY=${PYTHON:-python}
BUDGET=${GPU_SESSION_BUDGET_S:-540}
START=$SECONDS
SUMMARY="$OUT/summary.txt"
LOG="$OUT/session.log"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$SUMMARY"
failed=0

note() { echo "$*" | tee -a "$SUMMARY"; }

# run_step NAME CAP_SECONDS RESERVE_SECONDS LOG CMD...: runs CMD under `timeout`, at most
# CAP seconds and never into the RESERVE kept for the steps after it; output to LOG.
run_step() {
  local name=$1 cap=$2 reserve=$3 log=$4
  shift 4
  local left=$((BUDGET - (SECONDS - START) - reserve))
  local limit=$((left < cap ? left : cap))
  if [ "$limit" -lt 20 ]; then
    note "SKIP  $name (no time left in the ${BUDGET}s budget)"
    failed=1
    return 1
  fi
  echo "=== $name (limit ${limit}s) ===" | tee -a "$log"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    note "ok    $name ($((SECONDS - t0))s)"
  else
    [ "$rc" -eq 124 ] && note "FAIL  $name: timed out after ${limit}s" || note "FAIL  $name: exit code $rc ($((SECONDS - t0))s)"
    failed=1
  fi
  return "$rc"
}

note "gpu_session: $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' | tee -a "$SUMMARY"
$PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tee -a "$SUMMARY"

# 1. Build + install (sm_90 only: the session's GPU). setup.py compiles one file at a
#    time (no ninja), so this is the longest step: a few minutes.
export TORCH_CUDA_ARCH_LIST="9.0"
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
run_step "install" 330 240 "$LOG" \
  $PY -m pip install --no-build-isolation --no-deps --no-index -v . >/dev/null
tail -3 "$LOG"

# The repository root shadows the installed package when Python runs from here: give
# the source tree the compiled extension too, so both resolve to working kernels.
inst_dir=$(cd /tmp && $PY -c 'import adaptive_conv_ext, os; print(os.path.dirname(adaptive_conv_ext.__file__))' 2>/dev/null)
if [ -n "$inst_dir" ] && [ "$inst_dir" != "$PWD/adaptive_conv_ext" ]; then
  cp -f "$inst_dir"/_C*.so adaptive_conv_ext/ 2>/dev/null || true
fi

# 2. The CUDA kernels must be registered, or the CUDA tests would silently skip.
run_step "cuda kernels registered" 60 240 "$LOG" $PY - <<'EOF'
import torch, adaptive_conv_ext
from adaptive_conv_ext import _native
print("package:", adaptive_conv_ext.__file__)
print("import error:", _native.IMPORT_ERROR)
print("cuda available:", torch.cuda.is_available(), "| native CUDA kernel:", _native.has_kernel("cuda"))
assert torch.cuda.is_available() and _native.has_kernel("cuda")
EOF

# 3. Tests.
run_step "pytest" 240 150 "$OUT/tests.log" $PY -m pytest -x -q -rs tests/

# 4. compute-sanitizer on a small forward + backward (static and generic kernels, all
#    flush modes: atomics, deterministic workspaces).
SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
cat >"$WORK/sanitize_case.py" <<'EOF'
import torch
from adaptive_conv_ext import adaptive_conv2d

def case(N, C, O, H, W, k, dtype, det, **kw):
    torch.use_deterministic_algorithms(det)
    g = torch.Generator().manual_seed(0)
    T = k[0] * k[1]
    x = torch.randn(N, C, H, W, generator=g).to("cuda", dtype).requires_grad_()
    w = (torch.randn(O, C // kw.get("groups", 1), *k, *k, generator=g) / T**0.5).to("cuda", dtype).requires_grad_()
    kb = torch.randn(O, C // kw.get("groups", 1), *k, generator=g).to("cuda", dtype).requires_grad_()
    b = torch.randn(O, generator=g).to("cuda", dtype).requires_grad_()
    y = adaptive_conv2d(x, w, kb, b, backend="native", **kw)
    y.backward(torch.randn_like(y))
    torch.cuda.synchronize()
    assert all(torch.isfinite(t.grad).all() for t in (x, w, kb, b))

case(2, 3, 4, 20, 37, (3, 3), torch.float32, False, padding=1)
case(2, 3, 4, 20, 37, (3, 3), torch.float32, True, padding=1)
case(1, 2, 4, 13, 11, (2, 3), torch.float64, True, stride=(1, 2), padding=(0, 1))
case(1, 4, 4, 18, 18, (7, 7), torch.bfloat16, False, padding=3, groups=4)
case(1, 2, 2, 9, 9, (5, 5), torch.float16, False, padding=2, dilation=2)
print("sanitizer case done")
EOF
if [ -z "$SAN" ]; then
  note "SKIP  compute-sanitizer (not found)"
else
  run_step "compute-sanitizer memcheck" 75 105 "$LOG" \
    "$SAN" --tool memcheck --error-exitcode 1 --print-limit 20 $PY "$WORK/sanitize_case.py"
  # racecheck only our kernels when this sanitizer can filter by name (faster, and no
  # noise from PyTorch's own kernels).
  filter=()
  if "$SAN" --help 2>/dev/null | grep -q -- '--kernel-name '; then
    filter=(--kernel-name kns=adaptive_conv2d)
  fi
  run_step "compute-sanitizer racecheck" 75 60 "$LOG" \
    "$SAN" --tool racecheck ${filter[@]+"${filter[@]}"} --error-exitcode 1 --print-limit 20 $PY "$WORK/sanitize_case.py"
fi

# 5. Benchmarks: whatever time is left (at least a minute if the budget allows).
run_step "benchmarks" 100000 0 "$LOG" $PY -m benchmarks --device cuda --out "$OUT"

note "total $((SECONDS - START))s; $([ "$failed" -eq 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
echo "===== summary ($SUMMARY) ====="
cat "$SUMMARY"
exit "$failed"
