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

echo "install.sh: building adaptive_conv_ext against torch $($PY -c 'import torch; print(torch.__version__)')"
$PIP --no-build-isolation -e .
$PY -c "import adaptive_conv_ext as a; print('install.sh: backends on cpu:', {k: v is None for k, v in a.available_backends('cpu').items()})"
