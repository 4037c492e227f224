#!/usr/bin/env bash
# Installs what the tests, examples and benchmarks need, then this package
# (editable: the compiled kernels land in this checkout, so `python -m pytest`
# and `python -m benchmarks` run from here use them).
# torch is installed only if missing, pinned to the CPU build: an unpinned
# `pip install torch` would pull several GB of CUDA packages. On a GPU machine,
# install the CUDA torch you want first; it is then kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip install -q --disable-pip-version-check"

# module-name requirement: installed only when the module is missing (works offline
# on machines that already have them, e.g. the GPU machine).
need=()
while read -r module requirement; do
  $PY -c "import $module" 2>/dev/null || need+=("$requirement")
done <<'LIST'
torch torch==2.13.0
triton triton==3.6.0
pytest pytest
hypothesis hypothesis
tqdm tqdm
matplotlib matplotlib
sklearn scikit-learn
onnx onnx==1.23.2
onnxscript onnxscript==0.7.2
onnxruntime onnxruntime==1.32.0
LIST
# triton 3.6 needs numpy < 2.4
if ! $PY -c "import numpy, sys; sys.exit(tuple(map(int, numpy.__version__.split('.')[:2])) >= (2, 4))" 2>/dev/null; then
  need+=("numpy<2.4")
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "install.sh: installing ${need[*]}"
  $PIP "${need[@]}"
fi

# Fashion-MNIST (the Debian package) for examples/fashion_mnist.py and its test; only
# where apt-get exists and the package is missing. Failure is reported, not fatal: the
# example then asks for --data-dir, and the test fails in CI (CI set) or skips elsewhere.
if command -v apt-get >/dev/null && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
  if { $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1; then
    echo "install.sh: installed dataset-fashion-mnist"
  else
    echo "install.sh: could not apt-get install dataset-fashion-mnist (examples/fashion_mnist.py then needs --data-dir)"
  fi
fi

echo "install.sh: building adaptive_conv_ext against torch $($PY -c 'import torch; print(torch.__version__)') (2-3 minutes on 2 cores)"
# pip -v writes each compiler command to the log; while it runs, every file the compiler
# starts is printed, so the build shows progress. The whole log is kept, and shown on failure.
mkdir -p build
log=build/install.log
$PY -m pip install -v --disable-pip-version-check --no-build-isolation -e . </dev/null >"$log" 2>&1 &
pid=$!
shown=0
report_progress() {
  local files
  files=$(grep -oE " -c [^ ]+\.(cpp|cu)" "$log" 2>/dev/null | awk '{print $2}' || true)
  [ -n "$files" ] || return 0
  echo "$files" | tail -n +$((shown + 1)) | sed 's/^/install.sh:   compiling /'
  shown=$(echo "$files" | wc -l)
}
while kill -0 "$pid" 2>/dev/null; do
  sleep 3
  report_progress
done
if ! wait "$pid"; then
  tail -n 60 "$log"
  echo "install.sh: the build failed; full log: $log" >&2
  exit 1
fi
report_progress
echo "install.sh: build finished (log: $log)"
$PY -c "import adaptive_conv_ext as a; print('install.sh: backends on cpu:', {k: v is None for k, v in a.available_backends('cpu').items()})"
