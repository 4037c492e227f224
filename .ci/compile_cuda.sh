#!/usr/bin/env bash
# CUDA checks that need no GPU:
#  1. every csrc/**/*.cu compiles with nvcc for sm_80 and sm_90 (-c only, into a temp dir,
#     with ptxas -v);
#  2. SASS check of the sm_90 code (.ci/sass_check.py, cuobjdump from CUDA or triton's
#     wheel): HMMA and only 16-bit MUFU.TANH in the tensor-core kernels, 0 bytes of register
#     spill in every kernel (every arch built); prints the per-kernel table;
#  3. the CPU models of the PTX instructions pass their unit tests (testing/test_ptx.cpp);
#  4. the CPU emulation of the kernels (csrc/ops/cuda/testing/emulate_kernels.cpp: the same
#     kernel source run with one std::thread per CUDA thread) passes its quick cases, the
#     tensor-core forward cases and the fused tensor-core backward cases (all gradients,
#     weight only, input only; deterministic mode bitwise repeatable);
#  5. the floor report (benchmarks/floor_report.py --check, sm_90 objects of step 1, the
#     planner's decisions from the emulation binary's `plan` mode) has every SPEC row on the
#     kernels the planner picks; the static model's tables are printed (report only).
# Skips (exit 0) with a message when nvcc is absent. Exits non-zero on any error.
# Env: COMPILE_CUDA_JOBS (parallel nvcc processes, default nproc),
#      COMPILE_CUDA_ARCHS (default "80 90"; .ci/run: "90", since .ci/cuda_build.sh builds
#      both archs of the whole extension and only sm_90 is SASS-checked),
#      COMPILE_CUDA_EMULATE=0 to skip steps 3-4.
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
archs=${COMPILE_CUDA_ARCHS:-80 90}
gencode=""
for a in $archs; do gencode+=" -gencode arch=compute_$a,code=sm_$a"; done
export gencode
echo "compile_cuda: $(nvcc --version | tail -1)"
echo "compile_cuda: ${#files[@]} file(s), sm: ${archs}, ${jobs} parallel job(s)"

compile_one() {
  local src=$1 tmp=$2
  local obj="$tmp/$(echo "$src" | tr '/' '_').o"
  local log="$obj.log"
  local t0=$SECONDS
  # shellcheck disable=SC2086  # $gencode is a list of flags
  if nvcc -std=c++17 -O3 -Icsrc -Xptxas -v $gencode \
      -c "$src" -o "$obj" >"$log" 2>&1; then
    echo "  ok    $src ($((SECONDS - t0)) s)"
    grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$log" | sed 's/^/        /' || true  # warnings
    return 0
  fi
  echo "  FAIL  $src"
  sed 's/^/        /' "$log"
  return 1
}
export -f compile_one

status=0
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} bash -c 'compile_one "$@"' _ {} "$tmp" || status=1
if [ "$status" -ne 0 ]; then
  echo "compile_cuda: FAILED"
  exit 1
fi
echo "compile_cuda: all CUDA sources compile"

# SASS check: cuobjdump of this CUDA if it has one, else the one in triton's wheel.
cuobjdump=""
for c in "${CUDA_HOME:-/nonexistent}/bin/cuobjdump" "$(command -v cuobjdump || true)" \
    "$(python -c 'import os, triton; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump"))' 2>/dev/null || true)"; do
  if [ -n "$c" ] && [ -x "$c" ]; then cuobjdump=$c; break; fi
done
if [ -z "$cuobjdump" ]; then
  echo "compile_cuda: no cuobjdump (CUDA_HOME/bin, PATH, triton wheel); skipping the SASS check"
else
  echo "compile_cuda: SASS check (sm_90, $cuobjdump)"
  sass_args=()
  for src in "${files[@]}"; do
    case "$src" in *_f64.cu) continue ;; esac  # float64: correctness only, not checked
    obj="$tmp/$(echo "$src" | tr '/' '_').o"
    sass_args+=(--obj "$obj" --log "$obj.log")
  done
  python .ci/sass_check.py --cuobjdump "$cuobjdump" "${sass_args[@]}"
fi
if [ -n "$cuobjdump" ]; then
  # ptx.cuh's wrappers trap where the instruction does not exist (sm_75: no bf16 mma.sync).
  cat >"$tmp/trap.cu" <<'EOF_TRAP'
#include "ops/cuda/kernels/ptx.cuh"
__global__ void mma_bf16(float* d, const uint32_t* r) {
  const uint32_t a[4] = {r[0], r[1], r[2], r[3]};
  float acc[4] = {d[0], d[1], d[2], d[3]};
  adaptive_conv_ext::cuda::ptx::mma_m16n8k16<__nv_bfloat16>(acc, a, r[4], r[5]);
  d[0] = acc[0];
}
EOF_TRAP
  nvcc -std=c++17 -Icsrc -gencode arch=compute_75,code=sm_75 -cubin "$tmp/trap.cu" -o "$tmp/trap.cubin"
  trap_sass=$("$cuobjdump" -sass "$tmp/trap.cubin" 2>/dev/null)
  if ! grep -q "BPT.TRAP" <<<"$trap_sass" || grep -q "HMMA" <<<"$trap_sass"; then
    echo "compile_cuda: FAILED: ptx::mma_m16n8k16<bf16> compiled for sm_75 does not trap"
    exit 1
  fi
  echo "compile_cuda: ptx.cuh wrappers trap below their architecture (sm_75 bf16 mma: BPT.TRAP)"
fi
model_args=()  # the sm_90 objects the static model reads (step 5)
if [ -n "$cuobjdump" ] && [[ " $archs " == *" 90 "* ]]; then
  for ((i = 0; i < ${#sass_args[@]}; i += 4)); do model_args+=(--obj "${sass_args[i+1]}"); done
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
echo "compile_cuda: unit tests of the CPU models of the PTX instructions"
if ! "$cxx" -std=c++20 -O1 -pthread -Wno-unknown-pragmas -I"$cuda_inc" -Icsrc \
    csrc/ops/cuda/testing/test_ptx.cpp -o "$tmp/test_ptx" >"$tmp/test_ptx.log" 2>&1; then
  sed 's/^/        /' "$tmp/test_ptx.log"
  echo "compile_cuda: FAILED to build the PTX instruction tests"
  exit 1
fi
"$tmp/test_ptx"
echo "compile_cuda: building the CPU emulation of the kernels"
if ! "$cxx" -std=c++20 -O1 -pthread -Wno-unknown-pragmas -Wno-subobject-linkage \
    -I"$cuda_inc" -Icsrc csrc/ops/cuda/testing/emulate_kernels.cpp -o "$tmp/emulate" >"$tmp/emulate.log" 2>&1; then
  sed 's/^/        /' "$tmp/emulate.log"
  echo "compile_cuda: FAILED to build the emulation"
  exit 1
fi
if [ "${#model_args[@]}" -gt 0 ]; then
  echo "compile_cuda: static model of the forward and fused backward kernels (report only, benchmarks/static_model.py)"
  python -m benchmarks.static_model --cuobjdump "$cuobjdump" --planner "$tmp/emulate" "${model_args[@]}" \
    || echo "compile_cuda: static model failed (not a check)"
  echo "compile_cuda: floor report (python -m benchmarks --floors) of these objects, checked"
  python -m benchmarks.floor_report --planner "$tmp/emulate" "${model_args[@]}" --check
fi
"$tmp/emulate" quick
echo "compile_cuda: tensor-core forward cases in the emulation"
"$tmp/emulate" mma
echo "compile_cuda: fused tensor-core backward cases in the emulation"
"$tmp/emulate" bwdmma
