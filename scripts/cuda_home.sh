# Sourced by .ci/cuda_build.sh and scripts/gpu_session.sh: exports CUDA_HOME as the root
# of the toolkit that the nvcc on PATH belongs to, unless CUDA_HOME is set already.
# That nvcc may be a wrapper script outside the toolkit (then torch would guess a root
# without cuda_runtime.h); nvcc itself reports where it lives (_HERE_=<root>/bin).
# Returns 1 (CUDA_HOME unset) when there is no nvcc or no cuda_runtime.h under the root.
find_cuda_home() {
  if [ -z "${CUDA_HOME:-}" ]; then
    command -v nvcc >/dev/null 2>&1 || return 1
    local bin
    bin=$(nvcc --dryrun -x cu -c /dev/null 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -1)
    [ -n "$bin" ] || bin=$(dirname "$(readlink -f "$(command -v nvcc)")")
    CUDA_HOME=$(cd "$bin/.." && pwd)
  fi
  [ -f "$CUDA_HOME/include/cuda_runtime.h" ] || { echo "CUDA_HOME=$CUDA_HOME has no include/cuda_runtime.h" >&2; return 1; }
  export CUDA_HOME
}
