#!/usr/bin/env bash
# The full CUDA extension, built and checked on a machine with no GPU:
#   1. a second virtual environment with the CUDA build of torch (pip installs it from
#      local disk), so the CPU test suite keeps its CPU torch; a temp dir removed at the
#      end (5 GB), unless CUDA_VENV names one to make or reuse;
#   2. CUDA_HOME from the real nvcc (the nvcc on PATH may be a wrapper script outside the
#      toolkit, and torch would then guess a root without cuda_runtime.h);
#   3. setup.py build_ext OUT OF TREE (a temp dir: the checkout's own _C*.so, the CPU
#      build, stays), TORCH_CUDA_ARCH_LIST="8.0;9.0", MAX_JOBS files at a time;
#   4. tools/check_registration.py --expect-cuda on that build, run from outside the checkout.
# Skips (exit 0) with a message only when nvcc is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if ! command -v nvcc >/dev/null 2>&1; then
  echo "cuda_build: nvcc not found on PATH; skipping the CUDA extension build"
  exit 0
fi
source scripts/cuda_home.sh
if ! find_cuda_home; then
  echo "cuda_build: FAILED: no CUDA toolkit root found for $(command -v nvcc)"
  exit 1
fi
echo "cuda_build: CUDA_HOME=$CUDA_HOME ($("$CUDA_HOME/bin/nvcc" --version | tail -1))"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
venv=${CUDA_VENV:-$tmp/venv}
t0=$SECONDS
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# a no-op within seconds when a reused venv has them already
"$venv/bin/python" -m pip install -q --no-compile torch==2.14.1 triton==3.8.0 2>&1 | sed '/^WARNING: Location/d'
PY=$venv/bin/python
echo "cuda_build: venv $venv: $($PY -c 'import torch, triton; print("torch", torch.__version__, "CUDA", torch.version.cuda, "triton", triton.__version__)') ($((SECONDS - t0)) s)"

t0=$SECONDS
export TORCH_CUDA_ARCH_LIST="8.0;9.0" MAX_JOBS=${MAX_JOBS:-$(nproc)}
if ! $PY setup.py build_ext --build-lib "$tmp/lib" --build-temp "$tmp/obj" >"$tmp/build.log" 2>&1; then
  grep -E "error|Error" "$tmp/build.log" | head -40
  echo "cuda_build: FAILED to build (log above)"
  exit 1
fi
grep "^adaptive_conv_ext:" "$tmp/build.log" | sed 's/^/cuda_build: /'
echo "cuda_build: built $(cd "$tmp/lib" && ls adaptive_conv_ext/_C*.so) with nvcc for sm_80 and sm_90 in $((SECONDS - t0)) s (MAX_JOBS=$MAX_JOBS)"

# the Python package beside the new _C, imported from a directory outside the checkout
tar -cf - --exclude='_C*.so' --exclude=__pycache__ adaptive_conv_ext | tar -xf - -C "$tmp/lib"
(cd "$tmp" && CUDA_VISIBLE_DEVICES="" PYTHONPATH="$tmp/lib" $PY "$root/tools/check_registration.py" --expect-cuda) \
  | sed 's/^/cuda_build: /'
