#!/usr/bin/env bash
# One GPU session, verdict first, at most 480 s of wall time including the build. Run it
# from the repository root on the GPU machine (Python 3.12, torch 2.11.0+cu130, nvcc 13.0,
# no network):   OUT=/some/dir bash scripts/gpu_session.sh
# Plan only (no GPU needed; the caps and their total):   bash scripts/gpu_session.sh --dry-run
#
# Steps, in order (each under `timeout` at its own cap, every one runs even if an earlier
# one failed):
#   build        parallel build for this GPU's arch only, in place (setup.py build_ext)
#   register     every op has CUDA, CPU and Meta kernels (else the CUDA tests would skip)
#   tests        tests/test_cuda.py and the Triton GPU tests, no -x  -> $OUT/junit.xml
#   bench-mid64  mid-64 forward and forward+backward, bf16, fp16, fp32 -> $OUT/cuda-*_mid64.json,
#                rewritten after every case, so a timeout keeps the finished ones
#   memcheck     compute-sanitizer memcheck (PYTORCH_NO_CUDA_MEMORY_CACHING=1: the caching
#   racecheck    allocator would hide out-of-bounds accesses inside its cached blocks),
#   synccheck    then racecheck and synccheck, on small forward+backward cases of each dtype
#   bench-rest   the other SPEC shapes, with its cap plus whatever the steps before left
# $OUT/summary.txt (ok / fail / timeout per step and the headline numbers, % of floor for
# mid-64) is rewritten after every step; all output also goes to $OUT/session.log.
# Exit code: 0 if every step passed.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
ROOT=$PWD

BUDGET=480
ORDER=(build register tests bench-mid64 memcheck racecheck synccheck bench-rest)
declare -A CAP=([build]=150 [register]=25 [tests]=80 [bench-mid64]=100
                [memcheck]=35 [racecheck]=30 [synccheck]=20 [bench-rest]=30)
SLACK=10  # the summary writes and the gaps between steps
declare -A WHAT=(
  [build]="parallel build, this GPU's arch only (setup.py build_ext --inplace, MAX_JOBS = all cores)"
  [register]="every op has CUDA, CPU and Meta kernels (tools/check_registration.py --expect-cuda)"
  [tests]="pytest tests/test_cuda.py + Triton GPU tests, no -x, JUnit XML -> \$OUT/junit.xml"
  [bench-mid64]="mid-64 fwd and fwd+bwd, bf16/fp16/fp32, native/triton/conv2d; JSON after each case"
  [memcheck]="compute-sanitizer memcheck, PYTORCH_NO_CUDA_MEMORY_CACHING=1, small fwd+bwd per dtype"
  [racecheck]="compute-sanitizer racecheck, the same cases"
  [synccheck]="compute-sanitizer synccheck, the same cases"
  [bench-rest]="the other SPEC shapes (fp32, bf16), this cap plus any time left over"
)

if [ "${1:-}" = "--dry-run" ]; then
  total=$SLACK
  echo "gpu_session plan (budget ${BUDGET} s, every step under its own timeout):"
  for i in "${!ORDER[@]}"; do
    name=${ORDER[$i]}
    printf '  %d. %-12s cap %3d s  %s\n' $((i + 1)) "$name" "${CAP[$name]}" "${WHAT[$name]}"
    total=$((total + CAP[$name]))
  done
  printf '     %-12s cap %3d s  %s\n' slack "$SLACK" "summary writes and the gaps between steps"
  echo "total $total s"
  [ "$total" -le "$BUDGET" ]
  exit
fi

export OUT=${OUT:-$ROOT/gpu_session_out}
mkdir -p "$OUT"
export PY=${PYTHON:-python3} ROOT
WORK=$(mktemp -d)
export WORK
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS
LOG="$OUT/session.log"
SUMMARY="$OUT/summary.txt"
declare -A STATUS SECS HEAD
HEADER="gpu_session $(date -u +%FT%TZ) on $(hostname); $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null | head -1)
$($PY -c 'import sys, torch; print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)' 2>&1 | tail -1)"

write_summary() {
  {
    echo "$HEADER"
    for name in "${ORDER[@]}"; do
      printf '%-12s %-8s %s\n' "$name" "${STATUS[$name]:-pending}" "${SECS[$name]:-}"
      [ -n "${HEAD[$name]:-}" ] && sed 's/^/    /' <<<"${HEAD[$name]}"
    done
    echo "elapsed $((SECONDS - START)) s of ${BUDGET} s"
  } >"$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
}

# run_step NAME FUNCTION: FUNCTION (exported) under `timeout`, for its cap but never into
# the caps of the steps after it; the last step gets all the time that is left.
run_step() {
  local name=$1 fn=$2 reserve=$SLACK after=0 n
  for n in "${ORDER[@]}"; do
    [ "$after" -eq 1 ] && reserve=$((reserve + CAP[$n]))
    [ "$n" = "$name" ] && after=1
  done
  local left=$((BUDGET - (SECONDS - START) - reserve))
  local limit=$((left < CAP[$name] ? left : CAP[$name]))
  [ "$name" = "${ORDER[-1]}" ] && limit=$((BUDGET - (SECONDS - START) - 5))
  if [ "$limit" -lt 8 ]; then
    STATUS[$name]=skipped SECS[$name]="(no time left)"
    write_summary
    return
  fi
  echo "=== $name (limit ${limit} s) ===" | tee -a "$LOG"
  local t0=$SECONDS rc
  # INT first (pytest then still writes its JUnit XML), KILL 5 s later
  timeout --signal=INT --kill-after=5 $((limit - 5)) bash -c "$fn" 2>&1 | tee "$WORK/$name.log" >>"$LOG"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) STATUS[$name]=ok ;;
    124 | 137) STATUS[$name]=timeout ;;
    *) STATUS[$name]="fail" ;;
  esac
  SECS[$name]="$((SECONDS - t0)) s of ${limit} s (exit $rc)"
  HEAD[$name]=$(headline "$name" 2>&1)
  tail -4 "$WORK/$name.log"
  echo "--> $name: ${STATUS[$name]}, ${SECS[$name]}"
  write_summary
}

headline() {
  case $1 in
    build) grep -E "^adaptive_conv_ext:|error" "$WORK/build.log" | head -5 ;;
    register) grep -E "^registered:|^FAIL|^available_backends" "$WORK/register.log" ;;
    tests) $PY scripts/gpu_session_summary.py junit "$OUT/junit.xml" ;;
    bench-*) for f in "$OUT"/cuda-*_"${1#bench-}".json; do $PY scripts/gpu_session_summary.py bench "$f"; done ;;
    *check) $PY scripts/gpu_session_summary.py sanitizer "$WORK/$1.log" ;;
  esac
}

step_build() {
  source scripts/cuda_home.sh && find_cuda_home || exit 1
  arch=$($PY -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())') || exit 1
  echo "CUDA_HOME=$CUDA_HOME, TORCH_CUDA_ARCH_LIST=$arch, MAX_JOBS=$(nproc)"
  TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=$(nproc) $PY setup.py build_ext --inplace
}

step_register() {
  cd "$WORK" && PYTHONPATH=$ROOT $PY "$ROOT/tools/check_registration.py" --expect-cuda
}

step_tests() {
  local per_test=()
  $PY -c 'import pytest_timeout' 2>/dev/null && per_test=(--timeout=60)
  $PY -m pytest -q -rfEs -p no:cacheprovider "${per_test[@]}" --junitxml="$OUT/junit.xml" \
    tests/test_cuda.py tests/test_triton.py -k "test_cuda or test_gpu_"
}

bench() {  # shared options of the two benchmark steps
  $PY -m benchmarks --device cuda --backends native,triton,conv2d --no-plot --no-progress --out "$OUT" "$@"
}

step_bench_mid64() {
  bench --shapes mid-64 --dtypes bfloat16,float16,float32 --reps 20 --budget 8 --tag mid64
}

step_bench_rest() {
  bench --shapes lenet-mnist,resnet-stem,depthwise-256,depthwise-k7 --dtypes float32,bfloat16 \
    --reps 10 --budget 4 --tag rest
}

sanitize() {  # TOOL: our kernels only where this compute-sanitizer can filter by name
  local san filter=()
  san=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}"/bin/compute-sanitizer 2>/dev/null) \
    || { echo "compute-sanitizer not found"; exit 1; }
  "$san" --help 2>/dev/null | grep -q -- '--kernel-name ' && filter=(--kernel-name kns=adaptive_conv2d)
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 PYTHONPATH=$ROOT "$san" --tool "$1" "${filter[@]}" --error-exitcode 1 \
    --print-limit 20 $PY scripts/gpu_sanitize_cases.py
}
step_memcheck() { sanitize memcheck; }
step_racecheck() { sanitize racecheck; }
step_synccheck() { sanitize synccheck; }

export -f step_build step_register step_tests bench step_bench_mid64 step_bench_rest sanitize \
  step_memcheck step_racecheck step_synccheck

echo "$HEADER" | tee "$LOG"
write_summary
for name in "${ORDER[@]}"; do
  run_step "$name" "step_${name//-/_}"
done
cat "$SUMMARY"
for name in "${ORDER[@]}"; do
  [ "${STATUS[$name]}" = ok ] || exit 1
done
