#!/usr/bin/env bash
# CUDA checks that need no GPU:
#  1. every csrc/**/*.cu compiles with nvcc for sm_80 and sm_90 (-c only, into a temp dir,
#     with ptxas -v);
#  2. SASS check of the sm_90 code (python -m benchmarks.sass, cuobjdump from CUDA or triton's
#     wheel): HMMA and only 16-bit MUFU.TANH in the tensor-core kernels, 0 bytes of register
#     spill in every kernel (every arch built); prints the per-kernel table;
#  3. the CPU models of the PTX instructions pass their unit tests (testing/test_ptx.cpp);
#  4. the emulation runtime passes its unit tests (testing/test_emu_runtime.cpp: barriers,
#     a missing barrier gives a wrong result, deadlocks and stack overflows are caught);
#  5. the CPU emulation of the kernels (csrc/ops/cuda/testing/emulate_kernels.cpp: the same
#     kernel source run with one user-space fiber per CUDA thread, testing/emu_runtime.h)
#     passes its quick cases, the tensor-core forward cases and the fused tensor-core
#     backward cases (all gradients, weight only, input only; deterministic mode bitwise
#     repeatable);
#  6. ptx.cuh's wrappers trap below their architecture (an sm_75 bf16 mma gives BPT.TRAP);
#  7. the floor report (benchmarks/floor_report.py --check, the sm_90 objects of step 1, the
#     planner's decisions from the emulation binary's `plan` mode) has every SPEC row on the
#     kernels the planner picks; the static model's tables are printed (report only).
# Steps 3-5 need no nvcc output: they build and run in the background while nvcc compiles;
# their log is printed after the SASS check.
# With sm_90 only, the objects of the floor report's sources (benchmarks/floor_report.py:
# SOURCES, NVCC_FLAGS) go into its cache directory (build/sass_model/<key>, the key computed
# by floor_report itself) with their ptxas logs: a later floor report reuses them, and a
# later run of this script reuses them when the logs are there too.
# COMPILE_CUDA_OBJECTS=<dir>: step 1 is done already: <dir> holds every .cu file's object and
# ptxas -v log (<path with / as _>.o, .o.log), as setup.py keeps them with
# ADAPTIVE_CONV_CUDA_OBJECTS (.ci/run: the wheel's build, sm_80 and sm_90, the objects the
# wheel ships); steps 2 and 7 read the sm_90 code of those, and nothing is compiled twice.
# `compile_cuda.sh emulate DIR` runs steps 3-5 alone (binaries, log DIR/emulate.out and exit
# status DIR/emulate.rc in DIR); a later run with COMPILE_CUDA_EMULATED=DIR reports them
# instead of running them again (.ci/run: the emulation runs in the background from the start).
# Skips (exit 0) with a message when nvcc is absent. Exits non-zero on any error.
# Env: COMPILE_CUDA_JOBS (parallel nvcc processes, default nproc),
#      COMPILE_CUDA_ARCHS (default "80 90"; .ci/run: "90", since .ci/cuda_build.sh builds
#      both archs of the whole extension and only sm_90 is SASS-checked),
#      COMPILE_CUDA_EMULATE=0 to skip steps 3-5.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvcc >/dev/null 2>&1; then
  echo "compile_cuda: nvcc not found on PATH; skipping the CUDA compile check"
  exit 0
fi

tmp=$(mktemp -d)
emulate_pid=""
# On an early exit (a failed SASS check), let the background emulation end before its
# folder goes.
trap '[ -z "$emulate_pid" ] || wait "$emulate_pid" 2>/dev/null; rm -rf "$tmp"' EXIT

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
[ -n "${COMPILE_CUDA_OBJECTS:-}" ] || [ "${1:-}" = emulate ] || echo "compile_cuda: ${#files[@]} file(s), sm: ${archs}, ${jobs} parallel job(s)"
nvcc_flags="-std=c++17 -O3$gencode"  # as benchmarks/floor_report.py NVCC_FLAGS for sm_90

# --- steps 3-5 in the background (they need only g++ and CUDA's headers) ----------------
emulate_all() {
  local tmp=$1 cxx=${CXX:-g++}
  if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "compile_cuda: $cxx not found; skipping the instruction models and the kernel emulation"
    return 0
  fi
  local cuda_inc="${CUDA_HOME:-$(dirname "$(readlink -f "$(command -v nvcc)")")/..}/include"  # nvcc may be a symlink
  [ -f "$cuda_inc/cuda_runtime.h" ] || cuda_inc=/usr/local/cuda/include
  local flags=(-std=c++20 -O1 -Wno-unknown-pragmas -Wno-subobject-linkage -I"$cuda_inc" -Icsrc)
  local name
  for name in test_ptx test_emu_runtime emulate_kernels; do
    if ! "$cxx" "${flags[@]}" "csrc/ops/cuda/testing/$name.cpp" -o "$tmp/$name" >"$tmp/$name.build.log" 2>&1; then
      sed 's/^/        /' "$tmp/$name.build.log"
      echo "compile_cuda: FAILED to build testing/$name.cpp"
      return 1
    fi
  done
  echo "compile_cuda: unit tests of the CPU models of the PTX instructions"
  "$tmp/test_ptx" || return 1
  echo "compile_cuda: unit tests of the emulation runtime (fibers, barriers, visible races)"
  "$tmp/test_emu_runtime" || return 1
  echo "compile_cuda: CPU emulation of the kernels, quick cases"
  "$tmp/emulate_kernels" quick || return 1
  echo "compile_cuda: tensor-core forward cases in the emulation"
  "$tmp/emulate_kernels" mma || return 1
  echo "compile_cuda: fused tensor-core backward cases in the emulation"
  "$tmp/emulate_kernels" bwdmma || return 1
}
if [ "${1:-}" = emulate ]; then
  emu=${2:?usage: compile_cuda.sh emulate DIR}
  mkdir -p "$emu"
  t0=$SECONDS rc=0
  emulate_all "$emu" >"$emu/emulate.out" 2>&1 || rc=$?
  echo "compile_cuda: steps 3-5 (instruction models, runtime, kernel emulation) took $((SECONDS - t0)) s" >>"$emu/emulate.out"
  echo "$rc" >"$emu/emulate.rc"
  exit "$rc"
fi
emu=${COMPILE_CUDA_EMULATED:-$tmp}  # where the emulation binary, its log and status are
if [ -n "${COMPILE_CUDA_EMULATED:-}" ]; then
  echo "compile_cuda: steps 3-5 ran before (compile_cuda.sh emulate $emu)"
elif [ "${COMPILE_CUDA_EMULATE:-1}" != "0" ]; then
  emulate_all "$tmp" >"$tmp/emulate.out" 2>&1 &
  emulate_pid=$!
fi
# The emulation's log and status, once it is done; the script's exit status is its.
finish_emulation() {
  local rc=0
  if [ -n "${COMPILE_CUDA_EMULATED:-}" ]; then
    rc=$(cat "$emu/emulate.rc" 2>/dev/null || echo "no status")
    [ "$rc" = 0 ] || rc=1
  elif [ -z "$emulate_pid" ]; then
    echo "compile_cuda: emulation skipped (COMPILE_CUDA_EMULATE=0)"
    return 0
  else
    wait "$emulate_pid" || rc=$?
  fi
  cat "$emu/emulate.out"
  [ "$rc" -eq 0 ] || echo "compile_cuda: FAILED in the PTX instruction tests, the runtime tests or the kernel emulation"
  return "$rc"
}

# --- step 1: nvcc ---------------------------------------------------------------------------
# The floor report's object cache, when this run builds exactly what the report reads
# (sm_90 only, the same flags): one build of those objects per checkout. The key names the
# report's nvcc, so that nvcc builds them (and, for one compiler throughout, the others).
shared_dir="" shared_srcs="" nvcc_bin=nvcc prebuilt=${COMPILE_CUDA_OBJECTS:-}
if [ -n "$prebuilt" ]; then
  archs=$(cat "$prebuilt"/*.o.log 2>/dev/null | sed -n "s/.*Compiling entry function '[^']*' for 'sm_\([0-9]*a\?\)'.*/\1/p" | sort -u | tr '\n' ' ' | sed 's/ $//')
  echo "compile_cuda: the objects of the wheel's build in $prebuilt (sm: ${archs:-none}), not compiled again"
elif [ "$archs" = "90" ]; then
  if report_cache=$(python - 2>/dev/null <<'PY'
from benchmarks import floor_report as f
nvcc = f.find_nvcc()
print(f.DEFAULT_CACHE / f._cache_key(nvcc))
print(" ".join(f.NVCC_FLAGS))
print(nvcc)
print(" ".join(str(f.CUDA_DIR.relative_to(f.ROOT) / s) for s in f.SOURCES))
PY
  ); then
    mapfile -t rc_lines <<<"$report_cache"
    if [ "${rc_lines[1]}" = "$nvcc_flags" ]; then
      shared_dir=${rc_lines[0]}
      nvcc_bin=${rc_lines[2]}
      shared_srcs=" ${rc_lines[3]} "
      mkdir -p "$shared_dir"
      echo "compile_cuda: sm_90 objects of the floor report's sources in $shared_dir (shared with python -m benchmarks --floors)"
    fi
  fi
fi
export shared_dir shared_srcs nvcc_flags nvcc_bin prebuilt

# Object path of a source: the wheel build's (COMPILE_CUDA_OBJECTS), in the shared cache
# (named as floor_report names it) or in tmp.
obj_of() {
  local src=$1 tmp=$2
  if [ -n "$prebuilt" ]; then
    echo "$prebuilt/$(echo "$src" | tr '/' '_').o"
  elif [ -n "$shared_dir" ] && [[ "$shared_srcs" == *" $src "* ]]; then
    echo "$shared_dir/$(basename "$src" .cu).o"
  else
    echo "$tmp/$(echo "$src" | tr '/' '_').o"
  fi
}

compile_one() {
  local src=$1 tmp=$2
  local obj
  obj=$(obj_of "$src" "$tmp")
  local log="$obj.log"
  if [ -f "$obj" ] && [ -f "$log" ]; then
    echo "  ok    $src (${prebuilt:+from the wheel build: }$obj)"
    return 0
  fi
  if [ -n "$prebuilt" ]; then
    echo "  FAIL  $src: no object and ptxas log $obj(.log) from the wheel's build"
    return 1
  fi
  local part="$obj.part$$" t0=$SECONDS
  # shellcheck disable=SC2086  # $nvcc_flags is a list of flags
  if "$nvcc_bin" $nvcc_flags -Icsrc -Xptxas -v -c "$src" -o "$part" >"$part.log" 2>&1; then
    mv "$part.log" "$log"
    mv "$part" "$obj"  # last: an object in the cache always has its log
    echo "  ok    $src ($((SECONDS - t0)) s)"
    grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$log" | sed 's/^/        /' || true  # warnings
    return 0
  fi
  echo "  FAIL  $src"
  sed 's/^/        /' "$part.log"
  rm -f "$part" "$part.log"
  return 1
}
export -f compile_one obj_of

status=0
printf '%s\n' "${files[@]}" | xargs -P "$jobs" -I{} bash -c 'compile_one "$@"' _ {} "$tmp" || status=1
if [ "$status" -ne 0 ]; then
  echo "compile_cuda: FAILED"
  finish_emulation || true
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
    case "$src" in
      *_f64.cu) continue ;;  # float64: correctness only, not checked
      */planner.cu) continue ;;  # host code only: no kernel
    esac
    obj=$(obj_of "$src" "$tmp")
    sass_args+=(--obj "$obj" --log "$obj.log")
  done
  python -m benchmarks.sass --cuobjdump "$cuobjdump" "${sass_args[@]}"
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
    finish_emulation || true
    exit 1
  fi
  echo "compile_cuda: ptx.cuh wrappers trap below their architecture (sm_75 bf16 mma: BPT.TRAP)"
fi
model_args=()  # the sm_90 objects the static model reads (step 7)
if [ -n "$cuobjdump" ] && [[ " $archs " == *" 90 "* ]]; then
  for ((i = 0; i < ${#sass_args[@]}; i += 4)); do model_args+=(--obj "${sass_args[i+1]}"); done
fi

finish_emulation
# The planner's decisions come from the emulation binary (its `plan` mode), built above.
if [ "${#model_args[@]}" -gt 0 ] && [ -x "$emu/emulate_kernels" ]; then
  echo "compile_cuda: static model of the forward and fused backward kernels (report only, benchmarks/static_model.py)"
  python -m benchmarks.static_model --cuobjdump "$cuobjdump" --planner "$emu/emulate_kernels" "${model_args[@]}" \
    || echo "compile_cuda: static model failed (not a check)"
  echo "compile_cuda: floor report (python -m benchmarks --floors) of these objects, checked"
  python -m benchmarks.floor_report --planner "$emu/emulate_kernels" "${model_args[@]}" --check
fi
