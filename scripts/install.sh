#!/usr/bin/env bash
# Installs what the tests, examples and benchmarks need, then this package (editable:
# the compiled kernels land in this checkout), into a virtual environment only:
# the active one ($VIRTUAL_ENV), else .venv in this checkout, created here. The
# system interpreter's packages are never touched. Afterwards run Python through
# scripts/python (that environment's interpreter), e.g. `scripts/python -m benchmarks`.
#
# torch is installed only if missing, and then as the CPU build: a plain
# `pip install torch` on Linux pulls several GB of CUDA packages from PyPI. On a GPU
# machine, install the CUDA torch you want into the environment first; it is kept.
#
# Environment variables:
#   PYTHON=python3.X                   the interpreter .venv is created from (default python3)
#   ADAPTIVE_CONV_NO_SYSTEM_PACKAGES=1 never run apt-get (the Fashion-MNIST data package)
#   ADAPTIVE_CONV_FORCE_BUILD=1        rebuild the extension even if nothing changed
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source scripts/venv.sh
say() { echo "install.sh: $*"; }
mkdir -p build

TORCH_VERSION=2.13.0
TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
TICK_S=5  # progress at least this often while a background step runs

# tick LABEL LOG CMD...: runs CMD in the background with its output in LOG and prints
# progress every TICK_S seconds: the latest line of LOG matching $PROGRESS_RE (pip: what
# it collects or installs), or the elapsed time. Returns CMD's exit status.
PROGRESS_RE='^(Collecting|Downloading|Processing|Installing|Building|Successfully|Get:|Unpacking|Setting up)'
tick() {
  local label=$1 log=$2 t0=$SECONDS last pid line shown=""
  shift 2
  "$@" </dev/null >"$log" 2>&1 &
  pid=$!
  last=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ -n "${STEP_HOOK:-}" ] && $STEP_HOOK "$log"; then
      last=$SECONDS  # the hook printed something
    elif (( SECONDS - last >= TICK_S )); then
      line=$(grep -E "$PROGRESS_RE" "$log" 2>/dev/null | tail -n 1 | cut -c1-100 || true)
      if [ -n "$line" ] && [ "$line" != "$shown" ]; then
        say "  $label ($((SECONDS - t0)) s): $line"
        shown=$line
      else
        say "  $label: $((SECONDS - t0)) s ..."
      fi
      last=$SECONDS
    fi
  done
  wait "$pid"
}

# run_step LABEL LOG CMD...: tick, then "done", or on failure LOG's tail and exit.
run_step() {
  local label=$1 log=$2 t0=$SECONDS
  if ! tick "$@"; then
    tail -n 40 "$log"
    say "$label failed after $((SECONDS - t0)) s; full log: $log" >&2
    exit 1
  fi
  say "  $label: done in $((SECONDS - t0)) s (log: $log)"
}

# py_value VAR LABEL CODE: VAR = what Python CODE prints on stdout, with progress while
# it runs (importing torch takes a while on a busy machine); returns CODE's status.
py_value() {
  local var=$1 label=$2 code=$3 status=0
  tick "$label" build/install-py.out bash -c '"$0" -c "$1" 2>build/install-py.err' "$PY" "$code" || status=$?
  printf -v "$var" '%s' "$(cat build/install-py.out)"
  return $status
}

# ------------------------------------------------------------ 1. the environment
venv=$(target_venv)
if [ -n "${VIRTUAL_ENV:-}" ]; then
  say "installing into the active virtual environment $venv"
elif [ -x "$venv/bin/python" ]; then
  say "no virtual environment is active: installing into $venv (created by an earlier run)"
else
  base=${PYTHON:-python3}
  command -v "$base" >/dev/null || { say "no '$base' found: set PYTHON to a Python 3.9+ interpreter" >&2; exit 1; }
  say "no virtual environment is active: creating $venv from $(command -v "$base") ($("$base" --version 2>&1))"
  say "  (Debian/Ubuntu: 'python3 -m venv' needs the python3-venv package)"
  run_step "python -m venv" build/install-venv.log "$base" -m venv "$venv"
fi
PY=$venv/bin/python
[ -x "$PY" ] || { say "$PY is missing: $venv is not a virtual environment" >&2; exit 1; }
if ! "$PY" -c "import sys; sys.exit(sys.prefix == sys.base_prefix)"; then
  say "$PY is not inside a virtual environment (sys.prefix == sys.base_prefix): refusing to install there" >&2
  exit 1
fi
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)
say "Python: $PY ($("$PY" --version 2>&1)); afterwards run it as scripts/python"

# ------------------------------------------------------------ 2. torch
if py_value torch_version "checking for torch" "import torch; print(torch.__version__)"; then
  say "torch $torch_version is already installed: kept"
else
  # PyTorch's own CPU index serves the CPU build; PyPI's Linux wheel of the same version
  # is the CUDA build. A short timeout: an offline machine must not hang here.
  # (timeout: urlopen's own does not cover a hanging DNS look-up)
  limit=(); command -v timeout >/dev/null && limit=(timeout 10)
  if "${limit[@]}" "$PY" -c "import urllib.request as u; u.urlopen('$TORCH_CPU_INDEX/torch/', timeout=5)" >/dev/null 2>&1; then
    say "torch: installing torch==$TORCH_VERSION, the CPU build, from PyTorch's CPU wheel index $TORCH_CPU_INDEX (reachable)"
    run_step "torch from $TORCH_CPU_INDEX" build/install-torch.log \
      "${PIP[@]}" "torch==$TORCH_VERSION" --index-url "$TORCH_CPU_INDEX"
  elif "$PY" -m pip install --dry-run --no-index --no-deps -q "torch==$TORCH_VERSION+cpu" >/dev/null 2>&1; then
    say "torch: PyTorch's CPU wheel index $TORCH_CPU_INDEX is not reachable; installing torch==$TORCH_VERSION+cpu,"
    say "       the CPU build, from a wheel pip finds on this machine (its find-links / local index)"
    run_step "torch $TORCH_VERSION+cpu (local wheel)" build/install-torch.log \
      "${PIP[@]}" "torch==$TORCH_VERSION+cpu"
  else
    say "torch is missing, PyTorch's CPU wheel index $TORCH_CPU_INDEX is not reachable and pip finds no local" >&2
    say "torch==$TORCH_VERSION+cpu wheel. Install a torch into $venv first (it is then kept), e.g." >&2
    say "  $PY -m pip install torch==$TORCH_VERSION --index-url $TORCH_CPU_INDEX" >&2
    exit 1
  fi
  py_value torch_version "importing torch" "import torch; print(torch.__version__)"
fi

# ------------------------------------------------------------ 3. the other Python packages
# module requirement: installed only when the module is missing (offline machines that
# have them all install nothing).
PACKAGES='setuptools setuptools>=64
wheel wheel
triton triton==3.6.0
pytest pytest
hypothesis hypothesis
tqdm tqdm
matplotlib matplotlib
sklearn scikit-learn
onnx onnx==1.23.2
onnxscript onnxscript==0.7.2
onnxruntime onnxruntime==1.32.0'
# one Python run finds the missing modules (each import costs seconds on a busy machine)
export PACKAGES
py_value missing "checking the other packages" "import importlib.util as u, os
print(' '.join(r for m, r in (l.split() for l in os.environ['PACKAGES'].splitlines()) if u.find_spec(m) is None))"
read -r -a need <<<"$missing"
# triton 3.6 needs numpy < 2.4: a numpy that is newer is replaced, and this says so.
# (versions from the package metadata: importing triton or numpy would be slow)
py_value versions "checking numpy" "from importlib.metadata import version
def get(name):
    try:
        return version(name)
    except Exception:
        return '-'
print(get('triton'), get('numpy'))"
read -r triton_version numpy_version <<<"$versions"
if [ "$triton_version" = - ] || [[ "$triton_version" == 3.6.* ]]; then
  if [ "$numpy_version" = - ]; then
    say "numpy is pinned below 2.4: triton 3.6 needs numpy < 2.4"
    need+=("numpy<2.4")
  elif [ "$(printf '%s\n' "$numpy_version" 2.4 | sort -V | head -n 1)" = 2.4 ]; then
    say "DOWNGRADING numpy $numpy_version to numpy<2.4 in $venv: triton 3.6 needs numpy < 2.4"
    need+=("numpy<2.4")
  fi
fi
if [ ${#need[@]} -gt 0 ]; then
  # the torch chosen above stays: nothing below may replace it
  echo "torch==$torch_version" >build/install-constraints.txt
  # What pip would change, said before it changes it: any package already installed that
  # the resolution replaces (a dependency's downgrade included).
  run_step "resolving ${need[*]}" build/install-resolve.log "${PIP[@]}" --dry-run --quiet \
    --report build/install-report.json -c build/install-constraints.txt "${need[@]}"
  py_value replaced "comparing with what is installed" "import json
from importlib.metadata import version
from pip._vendor.packaging.version import Version
for item in json.load(open('build/install-report.json'))['install']:
    name, new = item['metadata']['name'], item['metadata']['version']
    try:
        old = version(name)
    except Exception:
        continue  # not installed: nothing is replaced
    if old != new:
        print(f'{\"DOWNGRADING\" if Version(new) < Version(old) else \"upgrading\"} {name} {old} -> {new}')"
  if [ -n "$replaced" ]; then
    while read -r change; do say "$change in $venv (needed by: ${need[*]})"; done <<<"$replaced"
  fi
  say "installing into $venv: ${need[*]}"
  run_step "pip install" build/install-packages.log "${PIP[@]}" -c build/install-constraints.txt "${need[@]}"
else
  say "every Python package the tests and benchmarks use is already installed"
fi

# ------------------------------------------------------------ 4. optional system package
# Fashion-MNIST (Debian's dataset-fashion-mnist) for examples/fashion_mnist.py and its
# test. Optional: without it the example asks for --data-dir (the test skips, or fails in CI).
if command -v apt-get >/dev/null && command -v dpkg >/dev/null && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if [ "${ADAPTIVE_CONV_NO_SYSTEM_PACKAGES:-0}" = 1 ]; then
    say "optional system package dataset-fashion-mnist: skipped (ADAPTIVE_CONV_NO_SYSTEM_PACKAGES=1)"
  elif [ "$(id -u)" -ne 0 ]; then
    say "optional system package dataset-fashion-mnist (Fashion-MNIST for examples/fashion_mnist.py): skipped, not root;"
    say "  'sudo apt-get install dataset-fashion-mnist' installs it, or pass the example --data-dir"
  else
    say "optional system package: running 'apt-get update' and 'apt-get install dataset-fashion-mnist'"
    say "  (Fashion-MNIST for examples/fashion_mnist.py; ADAPTIVE_CONV_NO_SYSTEM_PACKAGES=1 skips this)"
    if (run_step "apt-get" build/install-apt.log bash -c \
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist"); then
      say "installed dataset-fashion-mnist"
    else
      say "could not install dataset-fashion-mnist (not fatal: examples/fashion_mnist.py then needs --data-dir)"
    fi
  fi
fi

# ------------------------------------------------------------ 5. the extension
# Built again only when something it is built from changed: the hash of every file
# under csrc/ and of the build files, with the interpreter and the torch version.
# (A change rebuilds every file: setuptools compiles all sources of an extension.)
py_value fingerprint "hashing the sources" "import hashlib, pathlib, sys
h = hashlib.sha256(f'{sys.executable}\n$torch_version\n'.encode())
files = [p for p in pathlib.Path('csrc').rglob('*') if p.is_file()]
files += [pathlib.Path(p) for p in ('setup.py', 'CMakeLists.txt', 'pyproject.toml', 'tools/torch_ext_backend.py', 'tools/object_cache.py')]
for p in sorted(f for f in files if f.exists()):
    h.update(str(p).encode() + b'\0' + p.read_bytes() + b'\0')
print(h.hexdigest())"
stamp=build/install.stamp
installed_here() {
  # the package the environment imports is this checkout's, with its kernels loaded;
  # sets backends (which run on the CPU)
  py_value backends "loading adaptive_conv_ext" "import adaptive_conv_ext as a, os, sys
b = a.available_backends('cpu')
print({k: v is None for k, v in b.items()})
sys.exit(not (a.__file__.startswith(os.path.join('$root', '')) and b['native'] is None))"
}
if [ "${ADAPTIVE_CONV_FORCE_BUILD:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ] && installed_here; then
  say "adaptive_conv_ext: up to date (no file under csrc/ nor a build file changed since the last build): not rebuilt"
else
  say "building adaptive_conv_ext against torch $torch_version (2-3 minutes on 2 cores; log: build/install.log)"
  rm -f "$stamp"
  # pip -v writes each compiler command to the log: every file the compiler starts is printed.
  compiled_shown=0
  show_compiles() {
    local files count
    files=$(grep -oE " -c [^ ]+\.(cpp|cu)" "$1" 2>/dev/null | awk '{print $2}' || true)
    [ -n "$files" ] || return 1
    count=$(echo "$files" | wc -l)
    (( count > compiled_shown )) || return 1
    echo "$files" | tail -n +$((compiled_shown + 1)) | sed 's/^/install.sh:   compiling /'
    compiled_shown=$count
  }
  STEP_HOOK=show_compiles run_step "build" build/install.log \
    env ADAPTIVE_CONV_OBJECT_CACHE="$PWD/build/objects" "$PY" -m pip install -v --disable-pip-version-check --no-build-isolation --no-deps -e .
  installed_here || { say "the build finished but $PY does not load this checkout's kernels; see build/install.log" >&2; exit 1; }
  echo "$fingerprint" >"$stamp"
fi
say "backends on cpu: $backends"
say "done. Run Python from $venv as scripts/python, e.g. 'scripts/python -m pytest -q tests'"
