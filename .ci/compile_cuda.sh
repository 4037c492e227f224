#!/usr/bin/env bash
# CUDA checks that need no GPU:
#  1. every csrc/**/*.cu compiles with nvcc for sm_80 and sm_90 (-c only, into a temp dir);
#  2. the CPU emulation of the kernels (csrc/ops/cuda/testing/emulate_kernels.cpp: the same
#     kernel source run with one std::thread per CUDA thread) passes its quick cases.
# Skips (exit 0) with a message when nvcc is absent. Exits non-zero on any error.
# Env: COMPILE_CUDA_JOBS (parallel nvcc processes, default nproc),
#      COMPILE_CUDA_NVCC=0 to skip step 1 (.ci/run: .ci/cuda_build.sh compiled them already),
#      COMPILE_CUDA_EMULATE=0 to skip step 2.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "compile_cuda: nvcc not found on PATH; skipping the CUDA compile check"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mapfile -t files < <(find csrc -name '*.cu' | sort)
if [ "${#files[@]}" -eq 0 ]; then
  echo "compile_cuda: no .cu files under csrc/"
  exit 0
fi

jobs=${COMPILE_CUDA_JOBS:-$(nproc 2>/dev/null || echo 2)}
echo "compile_cuda: $(nvcc --version | tail -1)"
echo "compile_cuda: ${#files[@]} file(s), sm_80 + sm_90, ${jobs} parallel job(s)"

compile_one() {
  local src=$1 tmp=$2
  local obj="$tmp/$(echo "$src" | tr '/' '_').o"
  local log="$obj.log"
  local t0=$SECONDS
  if nvcc -std=c++17 -O3 -Icsrc \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      -c "$src" -o "$obj" >"$log" 2>&1; then
    echo "  ok    $src ($((SECONDS - t0)) s)"
    [ -s "$log" ] && sed 's/^/        /' "$log"  # warnings, if any
    return 0
  fi
  echo "  FAIL  $src"
  sed 's/^/        /' "$log"
  return 1
}
export -f compile_one

if [ "${COMPILE_CUDA_NVCC:-1}" = "0" ]; then
  echo "compile_cuda: nvcc compile skipped (COMPILE_CUDA_NVCC=0: the full CUDA extension build compiles them)"
else
  status=0
  printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} bash -c 'compile_one "$@"' _ {} "$tmp" || status=1
  if [ "$status" -ne 0 ]; then
    echo "compile_cuda: FAILED"
    exit 1
  fi
  echo "compile_cuda: all CUDA sources compile"
fi

if [ "${COMPILE_CUDA_EMULATE:-1}" = "0" ]; then
  echo "compile_cuda: emulation skipped (COMPILE_CUDA_EMULATE=0)"
  exit 0
fi
cxx=${CXX:-g++}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "compile_cuda: $cxx not found; skipping the kernel emulation"
  exit 0
fi
cuda_inc="${CUDA_HOME:-$(dirname "$(readlink -f "$(command -v nvcc)")")/..}/include"  # nvcc may be a symlink
[ -f "$cuda_inc/cuda_runtime.h" ] || cuda_inc=/usr/local/cuda/include
echo "compile_cuda: building the CPU emulation of the kernels"
if ! "$cxx" -std=c++20 -O1 -pthread -Wno-unknown-pragmas -Wno-subobject-linkage \
    -I"$cuda_inc" -Icsrc csrc/ops/cuda/testing/emulate_kernels.cpp -o "$tmp/emulate" >"$tmp/emulate.log" 2>&1; then
  sed 's/^/        /' "$tmp/emulate.log"
  echo "compile_cuda: FAILED to build the emulation"
  exit 1
fi
"$tmp/emulate" quick
